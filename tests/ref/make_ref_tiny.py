#!/usr/bin/env python3
"""Tiny random models for architectures stories260K does not cover, with an
independent PyTorch fp32 reference of their logits.

  tests/data/tiny-qwen2/   Qwen2: q/k/v biases, GQA, separate lm_head, rope_theta 1e6
  tests/data/tiny-llama3/  Llama 3: rope_scaling {"rope_type": "llama3"}, theta 5e5, tied head

Each folder gets config.json, model.safetensors (written here with
json/struct/numpy, as the safetensors library lays it out) and ref.bin:
  magic "QTRF", u32 version 1, u32 n_tokens, u32 n_vocab, u32 n_greedy = 0,
  i32 tokens[n_tokens], f32 logits[n_tokens][n_vocab]
The forward pass follows transformers' Qwen2ForCausalLM / LlamaForCausalLM
(rotate_half RoPE, _compute_llama3_parameters for the scaled frequencies).
Run: /usr/bin/python3 tests/ref/make_ref_tiny.py
"""
import json
import math
import os
import struct

import numpy as np
import torch

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def write_safetensors(path, tensors):
    """name -> numpy array (float32, or uint8 for bitsandbytes' packed weights), in the
    safetensors library's order (by dtype alignment, then name: float32 stays aligned)."""
    tensors = {k: (v if v.dtype == np.uint8 else np.asarray(v, dtype="<f4")) for k, v in tensors.items()}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k)):
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {"dtype": "U8" if a.dtype == np.uint8 else "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def inv_freq(cfg, HS):
    f = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    rs = cfg.get("rope_scaling")
    if rs:  # transformers' _compute_llama3_parameters
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        out = []
        for fr in f.tolist():
            wl = 2 * math.pi / fr
            if wl < hi_wl:
                out.append(fr)
            elif wl > lo_wl:
                out.append(fr / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * fr / factor + s * fr)
        f = torch.tensor(out, dtype=torch.float64)
    return f


def forward(W, cfg, tokens):
    C, NH, NKV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS, eps, T = C // NH, cfg["rms_norm_eps"], len(tokens)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq(cfg, HS)[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)

        def proj(n, heads):
            y = h @ W[p + f"self_attn.{n}_proj.weight"].T
            if p + f"self_attn.{n}_proj.bias" in W:
                y = y + W[p + f"self_attn.{n}_proj.bias"]
            return y.view(T, heads, HS).transpose(0, 1)

        q, k, v = proj("q", NH), proj("k", NKV), proj("v", NKV)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=0)
        v = v.repeat_interleave(NH // NKV, dim=0)
        att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(HS) + mask, dim=-1)
        x = x + (att @ v).transpose(0, 1).reshape(T, NH * HS) @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    return x @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T


def make(name, cfg, bias, seed):
    rng = np.random.default_rng(seed)
    C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    NH, NKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS = C // NH
    r = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)
    W = {"model.embed_tokens.weight": r(V, C), "model.norm.weight": 1 + r(C)}
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = r(V, C)
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        W[p + "input_layernorm.weight"] = 1 + r(C)
        W[p + "post_attention_layernorm.weight"] = 1 + r(C)
        W[p + "self_attn.q_proj.weight"] = r(NH * HS, C)
        W[p + "self_attn.k_proj.weight"] = r(NKV * HS, C)
        W[p + "self_attn.v_proj.weight"] = r(NKV * HS, C)
        W[p + "self_attn.o_proj.weight"] = r(C, NH * HS)
        W[p + "mlp.gate_proj.weight"] = r(F, C)
        W[p + "mlp.up_proj.weight"] = r(F, C)
        W[p + "mlp.down_proj.weight"] = r(C, F)
        if bias:
            W[p + "self_attn.q_proj.bias"] = r(NH * HS)
            W[p + "self_attn.k_proj.bias"] = r(NKV * HS)
            W[p + "self_attn.v_proj.bias"] = r(NKV * HS)
    d = os.path.join(DATA, name)
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    write_safetensors(os.path.join(d, "model.safetensors"), W)
    tokens = [int(t) for t in rng.integers(0, V, size=24)]
    with torch.no_grad():
        logits = forward({k: torch.from_numpy(v) for k, v in W.items()}, cfg, tokens)
    with open(os.path.join(d, "ref.bin"), "wb") as f:
        f.write(b"QTRF" + struct.pack("<IIII", 1, len(tokens), V, 0))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
    print(name, "ok", logits.shape)


if __name__ == "__main__":   # make_ref_dense.py and make_ref_mixtral.py import write_safetensors
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=96, max_position_embeddings=256, rms_norm_eps=1e-6,
                hidden_act="silu")
    make("tiny-qwen2", dict(base, model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=False), True, 1)
    make("tiny-llama3", dict(base, model_type="llama", rope_theta=500000.0, tie_word_embeddings=True,
                             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position_embeddings=16)), False, 2)
