#!/usr/bin/env python3
"""check_adapters.py: an independent reader for the adapter files qtune writes.

Checks, against the conventions of the tools that read them:
  PEFT (peft/utils/save_and_load.py, peft/tuners/lora/config.py):
    adapter_config.json fields and types; adapter_model.safetensors keys
    base_model.model.model.layers.N.{self_attn,mlp}.X_proj.lora_{A,B}.weight,
    A (r, in), B (out, r), float dtypes, offsets contiguous and in range.
  llama.cpp GGUF LoRA (convert_lora_to_gguf.py, src/llama-adapter.cpp):
    GGUF v3 header, general.type "adapter", adapter.type "lora",
    adapter.lora.alpha (f32), general.architecture; tensors
    blk.N.<name>.weight.lora_{a,b}, lora_a ne [in, r], lora_b ne [r, out],
    F32/F16/Q8_0, offsets aligned.
  Both given: the same adapter, i.e. A equal, B equal after
  convert_hf_to_gguf.py's LlamaModel.permute of q/k rows (llama), and
  alpha_gguf / r == the PEFT scale.
Uses only json and struct (no numpy, no torch) so it runs anywhere python3 does.

usage: check_adapters.py --config BASE/config.json [--peft DIR] [--gguf FILE]
Exit status 0 when every check passes.
"""
import argparse
import json
import math
import re
import struct
import sys

PROJ = {  # HF name -> (module, GGUF name, dims(in, out) from config)
    "q_proj": ("self_attn", "attn_q"), "k_proj": ("self_attn", "attn_k"), "v_proj": ("self_attn", "attn_v"),
    "o_proj": ("self_attn", "attn_output"), "gate_proj": ("mlp", "ffn_gate"), "up_proj": ("mlp", "ffn_up"),
    "down_proj": ("mlp", "ffn_down"),
}
GGUF_TO_HF = {v[1]: k for k, v in PROJ.items()}
ST_DTYPES = {"F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2)}
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8

failures = []


def check(cond, what):
    if cond:
        return True
    failures.append(what)
    print("FAIL:", what)
    return False


def dims(cfg):
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hs = cfg.get("head_dim") or C // nh
    return {"q_proj": (C, nh * hs), "k_proj": (C, nkv * hs), "v_proj": (C, nkv * hs), "o_proj": (nh * hs, C),
            "gate_proj": (C, F), "up_proj": (C, F), "down_proj": (F, C)}, hs, cfg["num_hidden_layers"]


def floats(raw, dtype):
    if dtype == "BF16":
        n = len(raw) // 2
        return [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(n)]
    code, size = ST_DTYPES[dtype]
    return list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))


# ---- PEFT ----
def read_peft(d, cfg):
    dd, hs, n_layer = dims(cfg)
    with open(d + "/adapter_config.json") as f:
        ac = json.load(f)
    check(ac.get("peft_type") == "LORA", "peft_type LORA")
    check(ac.get("task_type") == "CAUSAL_LM", "task_type CAUSAL_LM")
    r = ac.get("r")
    check(isinstance(r, int) and r >= 1, "r is a positive integer")
    check(isinstance(ac.get("lora_alpha"), (int, float)), "lora_alpha is a number")
    check(isinstance(ac.get("lora_dropout", 0.0), (int, float)), "lora_dropout is a number")
    check(isinstance(ac.get("use_rslora", False), bool), "use_rslora is a bool")
    check(ac.get("bias", "none") == "none", "bias none")
    check(isinstance(ac.get("base_model_name_or_path", ""), str), "base_model_name_or_path is a string")
    tm = ac.get("target_modules")
    check(isinstance(tm, list) and tm and all(t in PROJ for t in tm), "target_modules are Llama projection names")
    with open(d + "/adapter_model.safetensors", "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    check(8 + hlen <= len(data), "safetensors header fits")
    hdr = json.loads(data[8:8 + hlen])
    body = data[8 + hlen:]
    spans = []
    tensors = {}
    key_re = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$")
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        m = key_re.match(k)
        if not check(m is not None, "PEFT key name %s" % k):
            continue
        il, mod, proj, ab = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        check(proj in PROJ and PROJ[proj][0] == mod, "%s: module %s.%s" % (k, mod, proj))
        check(il < n_layer, "%s: layer < %d" % (k, n_layer))
        check(v["dtype"] in ST_DTYPES, "%s: dtype %s is F32/F16/BF16" % (k, v["dtype"]))
        n_in, n_out = dd[proj]
        want = [r, n_in] if ab == "A" else [n_out, r]
        check(v["shape"] == want, "%s: shape %s == %s" % (k, v["shape"], want))
        a, b = v["data_offsets"]
        check(0 <= a <= b <= len(body) and b - a == ST_DTYPES[v["dtype"]][1] * want[0] * want[1], "%s: offsets" % k)
        spans.append((a, b))
        tensors[(il, proj, ab)] = (v["shape"], floats(body[a:b], v["dtype"]))
    spans.sort()
    check(all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1)) and (not spans or spans[0][0] == 0),
          "safetensors data contiguous from 0")
    for (il, proj, ab) in list(tensors):
        check((il, proj, "B" if ab == "A" else "A") in tensors, "layer %d %s has both A and B" % (il, proj))
    alpha = ac.get("lora_alpha", r)
    scale = alpha / math.sqrt(r) if ac.get("use_rslora") else alpha / r
    print("PEFT %s: %d tensors, r %d, scale %g" % (d, len(tensors), r, scale))
    return tensors, r, scale


# ---- GGUF ----
class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("Q")
        s = self.d[self.p:self.p + n].decode("utf-8")
        self.p += n
        return s


SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
VT_NAMES = {6: "f32", 8: "string"}


def read_value(rd, t):
    if t == 8:
        return rd.string()
    if t == 9:
        et, n = rd.take("I"), rd.take("Q")
        return [read_value(rd, et) for _ in range(n)]
    return rd.take(SCALAR[t])


def read_gguf(path, cfg):
    dd, hs, n_layer = dims(cfg)
    with open(path, "rb") as f:
        data = f.read()
    rd = Reader(data)
    check(data[:4] == b"GGUF", "GGUF magic")
    rd.p = 4
    version, n_t, n_kv = rd.take("I"), rd.take("Q"), rd.take("Q")
    check(version == 3, "GGUF version 3")
    kv, kv_type = {}, {}
    for _ in range(n_kv):
        k = rd.string()
        t = rd.take("I")
        kv[k], kv_type[k] = read_value(rd, t), t
    check(kv.get("general.type") == "adapter", "general.type adapter")
    check(kv.get("adapter.type") == "lora", "adapter.type lora")
    check(kv_type.get("adapter.lora.alpha") == 6, "adapter.lora.alpha is f32")
    arch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}.get(cfg["model_type"])
    check(kv.get("general.architecture") == arch, "general.architecture %s == %s" % (kv.get("general.architecture"), arch))
    align = kv.get("general.alignment", 32)
    infos = []
    for _ in range(n_t):
        name = rd.string()
        nd = rd.take("I")
        ne = [rd.take("Q") for _ in range(nd)]
        t, off = rd.take("I"), rd.take("Q")
        infos.append((name, ne, t, off))
    base = (rd.p + align - 1) // align * align
    name_re = re.compile(r"^blk\.(\d+)\.(\w+)\.weight\.lora_([ab])$")
    tensors, ranks = {}, set()
    for name, ne, t, off in infos:
        m = name_re.match(name)
        if not check(m is not None and m.group(2) in GGUF_TO_HF, "GGUF tensor name %s" % name):
            continue
        il, proj, ab = int(m.group(1)), GGUF_TO_HF[m.group(2)], m.group(3)
        check(il < n_layer, "%s: layer < %d" % (name, n_layer))
        check(t in (GGML_F32, GGML_F16, GGML_Q8_0), "%s: type %d is F32/F16/Q8_0" % (name, t))
        check(len(ne) == 2, "%s: 2 dims" % name)
        n_in, n_out = dd[proj]
        r = ne[1] if ab == "a" else ne[0]
        ranks.add(r)
        want = [n_in, r] if ab == "a" else [r, n_out]
        check(ne == want, "%s: ne %s == %s (llama.cpp: lora_a [in, r], lora_b [r, out])" % (name, ne, want))
        check(off % align == 0, "%s: offset aligned to %d" % (name, align))
        if t == GGML_F32:
            n = ne[0] * ne[1]
            check(base + off + 4 * n <= len(data), "%s: data in the file" % name)
            vals = list(struct.unpack_from("<%df" % n, data, base + off))
            # row-major (ne[1] rows of ne[0]): lora_a rows are r x in (= PEFT A), lora_b rows are out x r (= PEFT B)
            tensors[(il, proj, ab.upper())] = ([ne[1], ne[0]], vals)
    check(len(ranks) == 1, "one rank in the adapter: %s" % sorted(ranks))
    r = ranks.pop() if len(ranks) == 1 else 0
    alpha = kv.get("adapter.lora.alpha", 0.0)
    scale = alpha / r if alpha and r else 1.0
    print("GGUF %s: %d tensors, r %d, alpha %g (scale %g), arch %s" % (path, len(tensors), r, alpha, scale,
                                                                       kv.get("general.architecture")))
    return tensors, r, scale


def permute_rows(vals, n_out, r, hs):
    """convert_hf_to_gguf.py LlamaModel.permute on B (out, r): reshape(n_head, 2, hs/2, r).swapaxes(1, 2)."""
    out = [0.0] * len(vals)
    half = hs // 2
    for h in range(n_out // hs):
        for i in range(half):
            for j in range(2):
                src, dst = h * hs + j * half + i, h * hs + 2 * i + j
                out[dst * r:(dst + 1) * r] = vals[src * r:(src + 1) * r]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="the base model's HF config.json")
    ap.add_argument("--peft")
    ap.add_argument("--gguf")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    peft = read_peft(a.peft, cfg) if a.peft else None
    gguf = read_gguf(a.gguf, cfg) if a.gguf else None
    if peft and gguf:
        pt, pr, ps = peft
        gt, gr, gs = gguf
        _, hs, _ = dims(cfg)
        check(pr == gr, "same rank")
        check(abs(ps - gs) <= 1e-6 * abs(ps), "same scale: PEFT %g, GGUF alpha/r %g" % (ps, gs))
        check(set(pt) == set(gt), "same tensors")
        permute = cfg["model_type"] in ("llama", "mistral")
        worst = 0.0
        for key, (shape, vals) in pt.items():
            if key not in gt:
                continue
            il, proj, ab = key
            want = vals
            if ab == "B" and permute and proj in ("q_proj", "k_proj"):
                want = permute_rows(vals, shape[0], shape[1], hs)
            got = gt[key][1]
            worst = max(worst, max(abs(x - y) for x, y in zip(want, got)))
        check(worst <= 1e-6, "PEFT and GGUF LoRA hold the same adapter (q/k rows permuted), max |d| %g" % worst)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
