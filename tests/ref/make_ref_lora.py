#!/usr/bin/env python3
"""Independent PyTorch fp32 reference for LoRA training (autograd, no PEFT).

stories260K (HF form) with LoRA on q, k, v, o, gate, up, down of every layer,
rank 4, alpha 8 (scale 2), A and B both non-zero (random), dropout 0.
A batch of two packed sequences (lengths 13 and 8, some targets masked).
Writes tests/data/lora-ref.bin:

  magic "QTLR", u32 version 1
  u32 rank, f32 alpha, u32 n_layer, u32 target_mask, u32 n_params
  u32 n_seq, u32 N, i32 seq_start[n_seq+1], i32 tokens[N], i32 targets[N]
  f32 params0[n_params]          (arena order: layer, target q..down, A (r,in) then B (out,r))
  f32 loss0                      (mean CE over targets)
  f32 grads0[n_params]           (d loss0 / d params)
  f32 lr, beta1, beta2, eps, weight_decay; u32 n_steps
  f32 losses[n_steps]            (loss before each AdamW step, same batch)
  f32 params_final[n_params]

Run: /usr/bin/python3 tests/ref/make_ref_lora.py [q4_0] [bf16]  (python3-torch, python3-numpy)
With q4_0 the projections whose rows are a multiple of 32 are first quantized
to Q4_0 and dequantized exactly as ggml does (QLoRA: PyTorch runs on the
dequantized base), written to lora-ref-q4_0.bin, with the same 20 AdamW steps.
With bf16 every matrix product, forward and backward (the base and adapter
projections, q k^T, P v, the output head), rounds both operands to bfloat16
(nearest even) and sums the exact products in fp32, the rest stays fp32: the
numerics of qtune's QT_PREC_BF16 (PyTorch autocast's bf16 matmul without
rounding the product's result), written to lora-ref[-q4_0]-bf16.bin. The bf16
products are summed in float64 and rounded once to float32, so the reference
does not depend on a summation order: with Q4_0's few-bit weights many
activations land next to a bf16 rounding tie, and PyTorch's own fp32 sums
against float64 sums move the Q4_0 loss by 1.6e-4 (float weights: 1e-5).
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
from make_ref_logits import MODELS, load_safetensors, rms_norm, rotate_half  # noqa: E402

HF = os.path.join(MODELS, "tinystories-260K", "hf")
QUANT = "q4_0" if "q4_0" in sys.argv[1:] else None
BF16 = "bf16" in sys.argv[1:]
OUT = os.path.join(HERE, "..", "data", f"lora-ref{'-' + QUANT if QUANT else ''}{'-bf16' if BF16 else ''}.bin")
TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
RANK, ALPHA = 4, 8.0
N_STEPS = 20
# eps 1e-6 rather than 1e-8: Adam moves a weight by ~lr * sign(g) in its
# first steps, so a gradient of ~1e-7 (float32 noise next to gradients of ~1)
# whose sign differs between two correct implementations would move one
# weight by 2 lr and the loss curve by ~1e-4; with eps above that noise the
# step of such a weight is ~lr * g / eps, negligible in either direction.
LR, B1, B2, EPS, WD = 2e-3, 0.9, 0.999, 1e-6, 0.01


def bfr(t):
    """t rounded to bfloat16 (nearest even), back in float32"""
    return t.to(torch.bfloat16).to(torch.float32)


class Bf16Matmul(torch.autograd.Function):
    """a @ b on bf16-rounded operands with fp32 sums; the backward products
    (grad @ b^T, a^T @ grad) round their operands the same way."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return dmm(bfr(a), bfr(b))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = dmm(bfr(g), bfr(b).transpose(-1, -2))
        gb = dmm(bfr(a).transpose(-1, -2), bfr(g))
        return ga, gb


def dmm(a, b):
    """a @ b summed in float64, rounded once to float32"""
    return (a.double() @ b.double()).float()


def mm(a, b):
    return Bf16Matmul.apply(a, b) if BF16 else a @ b


def lora_forward(W, cfg, lora, tokens, seq_start):
    C, NH, NKV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS, eps, s = C // NH, cfg["rms_norm_eps"], ALPHA / RANK
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]

    def lin(il, t, h):
        y = mm(h, W[f"model.layers.{il}.{PROJ[t]}.weight"].T)
        A, B = lora[(il, t)]
        return y + s * mm(mm(h, A.T), B.T)

    for il in range(cfg["num_hidden_layers"]):
        h = rms_norm(x, W[f"model.layers.{il}.input_layernorm.weight"], eps)
        q, k, v = lin(il, "q", h), lin(il, "k", h), lin(il, "v", h)
        outs = []
        for a, b in zip(seq_start[:-1], seq_start[1:]):
            T = b - a
            inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
            ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
            emb = torch.cat((ang, ang), -1)
            cos, sin = emb.cos().float(), emb.sin().float()
            qs = q[a:b].view(T, NH, HS).transpose(0, 1)
            ks = k[a:b].view(T, NKV, HS).transpose(0, 1)
            vs = v[a:b].view(T, NKV, HS).transpose(0, 1)
            qs = qs * cos + rotate_half(qs) * sin
            ks = ks * cos + rotate_half(ks) * sin
            ks = ks.repeat_interleave(NH // NKV, 0)
            vs = vs.repeat_interleave(NH // NKV, 0)
            mask = torch.full((T, T), float("-inf")).triu(1)
            att = torch.softmax(mm(qs, ks.transpose(-1, -2)) / HS ** 0.5 + mask, -1)
            outs.append(mm(att, vs).transpose(0, 1).reshape(T, NH * HS))
        x = x + lin(il, "o", torch.cat(outs, 0))
        h = rms_norm(x, W[f"model.layers.{il}.post_attention_layernorm.weight"], eps)
        x = x + lin(il, "down", torch.nn.functional.silu(lin(il, "gate", h)) * lin(il, "up", h))
    x = rms_norm(x, W["model.norm.weight"], eps)
    return mm(x, W["model.embed_tokens.weight"].T)


def q4_0_roundtrip(w):
    """ggml's quantize_row_q4_0_ref then dequantize_row_q4_0, in float32 as C does."""
    x = w.numpy().reshape(-1, 32).astype(np.float32)
    mx = x[np.arange(len(x)), np.argmax(np.abs(x), axis=1)]
    d = (mx / np.float32(-8)).astype(np.float32)
    inv = np.zeros_like(d)
    inv[d != 0] = (np.float32(1) / d[d != 0]).astype(np.float32)
    q = np.minimum(15, np.trunc((x * inv[:, None]).astype(np.float32) + np.float32(8.5))).astype(np.float32)
    dh = d.astype(np.float16).astype(np.float32)
    return torch.from_numpy(((q - 8) * dh[:, None]).astype(np.float32).reshape(w.shape))


def main():
    cfg = json.load(open(os.path.join(HF, "config.json")))
    W = load_safetensors(os.path.join(HF, "model.safetensors"))
    if QUANT == "q4_0":   # QLoRA: the projections as the C side's --quantize q4_0 leaves them
        for name in list(W):
            if any(p in name for p in PROJ.values()) and W[name].shape[1] % 32 == 0:
                W[name] = q4_0_roundtrip(W[name])
    rng = np.random.default_rng(1234)
    L = cfg["num_hidden_layers"]
    lora, order = {}, []
    for il in range(L):
        for t in TARGETS:
            w = W[f"model.layers.{il}.{PROJ[t]}.weight"]
            out_d, in_d = w.shape
            A = torch.tensor(rng.uniform(-1, 1, (RANK, in_d)) / np.sqrt(in_d), dtype=torch.float32, requires_grad=True)
            B = torch.tensor(rng.standard_normal((out_d, RANK)) * 0.05, dtype=torch.float32, requires_grad=True)
            lora[(il, t)] = (A, B)
            order += [A, B]
    seqs = [[1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421],
            [1, 290, 333, 301, 412, 267, 344, 258]]
    tokens, targets, seq_start = [], [], [0]
    for si, sq in enumerate(seqs):
        tokens += sq[:-1]
        tg = sq[1:]
        if si == 0:
            tg = [-1, -1, -1] + tg[3:]   # a masked prompt
        targets += tg
        seq_start.append(len(tokens))
    tt = torch.tensor(targets)

    def loss_fn():
        logits = lora_forward(W, cfg, lora, tokens, seq_start)
        return torch.nn.functional.cross_entropy(logits, tt, ignore_index=-1)

    params0 = torch.cat([p.detach().flatten() for p in order]).numpy().copy()
    loss0 = loss_fn()
    loss0.backward()
    grads0 = torch.cat([p.grad.flatten() for p in order]).numpy().copy()
    for p in order:
        p.grad = None
    opt = torch.optim.AdamW(order, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD)
    losses = []
    for _ in range(N_STEPS):
        opt.zero_grad()
        loss = loss_fn()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    final = torch.cat([p.detach().flatten() for p in order]).numpy()
    with open(OUT, "wb") as f:
        f.write(b"QTLR")
        f.write(struct.pack("<IIfIII", 1, RANK, ALPHA, L, 0x7F, len(params0)))
        f.write(struct.pack("<II", len(seqs), len(tokens)))
        f.write(np.asarray(seq_start, "<i4").tobytes())
        f.write(np.asarray(tokens, "<i4").tobytes())
        f.write(np.asarray(targets, "<i4").tobytes())
        f.write(params0.astype("<f4").tobytes())
        f.write(struct.pack("<f", loss0.item()))
        f.write(grads0.astype("<f4").tobytes())
        f.write(struct.pack("<fffffI", LR, B1, B2, EPS, WD, N_STEPS))
        f.write(np.asarray(losses, "<f4").tobytes())
        f.write(final.astype("<f4").tobytes())
    curve = f", losses {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else ""
    print(f"wrote {OUT}: {len(params0)} params, loss0 {loss0.item():.6f}{curve}")


if __name__ == "__main__":
    main()
