#!/usr/bin/env python3
"""NF4 references, written from bitsandbytes' published definitions
(bitsandbytes/functional.py: get_4bit_type("nf4"), quantize_4bit,
dequantize_4bit, quantize_blockwise, create_dynamic_map, QuantState.as_dict;
bitsandbytes/backends/default/ops.py: the reference quantize_4bit /
dequantize_4bit / quantize_blockwise kernels). bitsandbytes itself is not
installed here; these few functions are re-written in PyTorch below.

Writes:
  tests/data/nf4-ref.bin        a (6, 192) float32 matrix (one all-zero block, a value on a code midpoint),
                                its NF4 quantization without and with double quantization, and both
                                dequantizations:
                                magic "QTN4", u32 version 1, u32 rows, u32 cols,
                                f32 x[rows*cols], u8 packed[rows*cols/2], f32 absmax[nb],
                                u8 qabsmax[nb], f32 nested_absmax[ceil(nb/256)], f32 offset,
                                f32 deq[rows*cols] (plain), f32 deq_dq[rows*cols] (double quantized)
  tests/data/tiny-mixtral-bnb/  tests/data/tiny-mixtral's weights as a bitsandbytes 4-bit checkpoint
                                ("*-bnb-4bit": load_in_4bit, nf4, double quant): every nn.Linear but
                                lm_head as packed uint8 weight [n/2, 1] + weight.absmax (uint8) +
                                weight.quant_map + weight.nested_absmax + weight.nested_quant_map +
                                weight.quant_state.bitsandbytes__nf4 (JSON bytes), the rest float32;
                                ref.bin: logits (QTRF, as tiny-mixtral/ref.bin) of the model on the
                                dequantized weights; deq.bin: "QTDQ", u32 version 1, u32 n, then per
                                tensor u32 name length, name, u32 count, f32 values (dequantized)
  tests/data/tiny-mixtral/lora-ref-nf4.bin
                                QLoRA: lora-ref.bin's adapter and batch on a base whose q, k, v, o,
                                w1, w2, w3 are NF4 with double quantization (the router kept, as
                                qtune's --quantize keeps it) and dequantized; same QTMX format
  --c-table                     prints create_dynamic_map() as the C table of src/quant/quant-nf4.c

Run: /usr/bin/python3 tests/ref/make_ref_nf4.py   (after make_ref_mixtral.py)
"""
import json
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_ref_mixtral as mx  # noqa: E402
from make_ref_tiny import write_safetensors  # noqa: E402

DATA = os.path.join(HERE, "..", "data")

# get_4bit_type("nf4")
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data += [0] * (256 - len(data))
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


DYN = create_dynamic_map()


def quantize_blockwise(A, code, blocksize):
    """default ops quantize_blockwise: uint8 codes and float32 absmax per block."""
    A = A.reshape(-1).float()
    n = A.numel()
    nb = (n + blocksize - 1) // blocksize
    pad = torch.zeros(nb * blocksize - n)
    blocks = torch.cat([A, pad]).reshape(nb, blocksize)
    absmax = blocks.abs().max(dim=-1)[0]
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)[:n]
    bounds = (code[:-1] + code[1:]) / 2
    return torch.bucketize(scaled, bounds, out_int32=True).to(torch.uint8), absmax


def dequantize_blockwise(q, absmax, code, blocksize):
    out = code[q.to(torch.int64)]
    n = out.numel()
    nb = absmax.numel()
    return (torch.cat([out, torch.zeros(nb * blocksize - n)]).reshape(nb, blocksize) * absmax.view(-1, 1)).reshape(-1)[:n]


def quantize_nf4(W, double_quant):
    """quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=double_quant)."""
    A = W.reshape(-1).float()
    assert A.numel() % 64 == 0
    blocks = A.reshape(-1, 64)
    absmax = blocks.abs().max(dim=-1)[0]
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    q = torch.bucketize(scaled, (NF4[:-1] + NF4[1:]) / 2, out_int32=True).to(torch.uint8)
    packed = ((q[::2] << 4) | q[1::2]).unsqueeze(1)
    state = {"absmax": absmax}
    if double_quant:
        offset = absmax.mean()
        qabs, nabs = quantize_blockwise(absmax - offset, DYN, 256)
        state = {"absmax": qabs, "nested_absmax": nabs, "offset": offset}
    return packed, state


def effective_absmax(state):
    if "nested_absmax" not in state:
        return state["absmax"]
    a = dequantize_blockwise(state["absmax"], state["nested_absmax"], DYN, 256)
    return a + state["offset"]   # dequantize_4bit: absmax += offset, in float32


def dequantize_nf4(packed, state, shape):
    """dequantize_4bit: code[q] * absmax, float32."""
    flat = packed.reshape(-1)
    q = torch.empty(flat.numel() * 2, dtype=torch.int64)
    q[1::2] = (flat & 0xF).to(torch.int64)
    q[::2] = (flat >> 4).to(torch.int64)
    return (NF4[q].reshape(-1, 64) * effective_absmax(state).view(-1, 1)).reshape(shape)


def write_nf4_ref():
    rng = np.random.default_rng(3)
    rows, cols = 6, 192
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x[2, 64:128] = 0   # an all-zero block
    x[4, 0] = 0.5
    x[4, 1] = (0.5626170039176941 + 0.44070982933044434) / 2 * 0.5   # on a midpoint of the scaled codes
    W = torch.from_numpy(x)
    packed, st = quantize_nf4(W, False)
    packed_dq, st_dq = quantize_nf4(W, True)
    assert torch.equal(packed, packed_dq)   # the codes do not depend on double quantization
    deq = dequantize_nf4(packed, st, W.shape)
    deq_dq = dequantize_nf4(packed_dq, st_dq, W.shape)
    with open(os.path.join(DATA, "nf4-ref.bin"), "wb") as f:
        f.write(b"QTN4" + struct.pack("<III", 1, rows, cols))
        f.write(x.tobytes())
        f.write(packed.numpy().tobytes())
        f.write(st["absmax"].numpy().astype("<f4").tobytes())
        f.write(st_dq["absmax"].numpy().tobytes())
        f.write(st_dq["nested_absmax"].numpy().astype("<f4").tobytes())
        f.write(struct.pack("<f", st_dq["offset"].item()))
        f.write(deq.numpy().astype("<f4").tobytes())
        f.write(deq_dq.numpy().astype("<f4").tobytes())
    print("wrote nf4-ref.bin, max |x - deq|", float((W - deq).abs().max()))


def is_linear(name):
    return name.endswith(".weight") and ("_proj." in name or "block_sparse_moe" in name)


def write_bnb():
    out = os.path.join(DATA, "tiny-mixtral-bnb")
    os.makedirs(out, exist_ok=True)
    cfg = dict(mx.CFG, quantization_config=dict(
        quant_method="bitsandbytes", load_in_4bit=True, load_in_8bit=False, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="float32", bnb_4bit_quant_storage="uint8",
        llm_int8_skip_modules=None))
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    src = mx.load_model(os.path.join(DATA, "tiny-mixtral"))
    tensors, deq_W = {}, {}
    for name, w in src.items():
        if not is_linear(name):
            tensors[name] = w.numpy()
            deq_W[name] = w
            continue
        packed, st = quantize_nf4(w, True)
        tensors[name] = packed.numpy()
        tensors[name + ".absmax"] = st["absmax"].numpy()
        tensors[name + ".quant_map"] = NF4.numpy()
        tensors[name + ".nested_absmax"] = st["nested_absmax"].numpy()
        tensors[name + ".nested_quant_map"] = DYN.numpy()
        qs = {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": list(w.shape),
              "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": st["offset"].item()}
        tensors[name + ".quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(qs).encode(), dtype=np.uint8)
        deq_W[name] = dequantize_nf4(packed, st, w.shape)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    rng = np.random.default_rng(5)
    tokens = [1] + [int(t) for t in rng.integers(3, mx.CFG["vocab_size"], 23)]
    mx.write_logits_ref(os.path.join(out, "ref.bin"), deq_W, mx.CFG, tokens)
    keep = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
            "model.layers.0.block_sparse_moe.experts.3.w2.weight", "model.layers.1.block_sparse_moe.gate.weight"]
    with open(os.path.join(out, "deq.bin"), "wb") as f:
        f.write(b"QTDQ" + struct.pack("<II", 1, len(keep)))
        for k in keep:
            v = deq_W[k].numpy().astype("<f4").reshape(-1)
            f.write(struct.pack("<I", len(k)) + k.encode() + struct.pack("<I", v.size) + v.tobytes())
    print(f"wrote {out}")


def write_qlora_ref():
    W = mx.load_model(os.path.join(DATA, "tiny-mixtral"))
    for name in list(W):
        if is_linear(name) and "block_sparse_moe.gate." not in name:
            packed, st = quantize_nf4(W[name], True)
            W[name] = dequantize_nf4(packed, st, W[name].shape)
    mx.write_lora_ref(os.path.join(DATA, "tiny-mixtral", "lora-ref-nf4.bin"), W, mx.CFG, 17)


def main():
    if "--c-table" in sys.argv:
        vals = [float(v) for v in DYN]
        for i in range(0, 256, 4):
            print("    " + " ".join(f"{v.hex()}f," for v in vals[i:i + 4]))
        return
    write_nf4_ref()
    write_bnb()
    write_qlora_ref()
    print(f"smallest gap between the K-th and (K+1)-th routing probability: {min(mx.gaps):.2e}")
    assert min(mx.gaps) > mx.MIN_GAP, "an expert choice is too close to call: change a seed"


if __name__ == "__main__":
    main()
