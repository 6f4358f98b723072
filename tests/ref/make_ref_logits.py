#!/usr/bin/env python3
"""Independent PyTorch fp32 reference for the inference engine.

Reads the Hugging Face form of stories260K (config.json + model.safetensors,
parsed here with json/struct/numpy only), runs a plain transformers-style
LlamaForCausalLM forward (RMSNorm, rotate_half RoPE, causal GQA attention,
SwiGLU, tied head) in torch fp32, and writes tests/data/stories260K-ref.bin:

  magic "QTRF" (4 bytes), u32 version = 1,
  u32 n_tokens, u32 n_vocab, u32 n_greedy,
  i32 tokens[n_tokens], f32 logits[n_tokens][n_vocab],
  i32 greedy[n_greedy]   (greedy continuation after BOS, full recompute)

Run: /usr/bin/python3 tests/ref/make_ref_logits.py  (QT_SHARED_MODELS overrides ../shared/models)
(python3-torch and python3-numpy from Debian). CI uses the committed output.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.environ.get("QT_SHARED_MODELS") or os.path.join(HERE, "..", "..", "..", "shared", "models")
HF = os.path.join(MODELS, "tinystories-260K", "hf")
OUT = os.path.join(HERE, "..", "data", "stories260K-ref.bin")

# fixed prompt: BOS then arbitrary in-vocabulary ids (the tokenizer is tested elsewhere)
TOKENS = [1, 403, 407, 261, 378, 267, 263, 700 % 512, 300, 415, 270, 289, 442, 281, 395, 2]
N_GREEDY = 48


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[base + b : base + e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(W, cfg, tokens):
    C = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    NKV = cfg["num_key_value_heads"]
    HS = cfg.get("head_dim", C // NH)
    eps = cfg["rms_norm_eps"]
    T = len(tokens)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    inv_freq = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, NH, HS).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, NKV, HS).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, NKV, HS).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=0)
        v = v.repeat_interleave(NH // NKV, dim=0)
        att = (q @ k.transpose(-1, -2)) / (HS ** 0.5) + mask
        att = torch.softmax(att, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, NH * HS)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def main():
    cfg = json.load(open(os.path.join(HF, "config.json")))
    W = load_safetensors(os.path.join(HF, "model.safetensors"))
    with torch.no_grad():
        logits = forward(W, cfg, TOKENS)
        seq = [1]
        for _ in range(N_GREEDY):
            seq.append(int(forward(W, cfg, seq)[-1].argmax()))
    greedy = seq[1:]
    n_vocab = logits.shape[1]
    with open(OUT, "wb") as f:
        f.write(b"QTRF")
        f.write(struct.pack("<IIII", 1, len(TOKENS), n_vocab, len(greedy)))
        f.write(np.asarray(TOKENS, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
        f.write(np.asarray(greedy, dtype="<i4").tobytes())
    print(f"wrote {OUT}: {len(TOKENS)} tokens x {n_vocab} logits, greedy {greedy[:12]}...")


if __name__ == "__main__":
    main()
