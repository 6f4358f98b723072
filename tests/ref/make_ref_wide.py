#!/usr/bin/env python3
"""Independent PyTorch fp32 reference at realistic width (engine issue).

A random-weight Llama with TinyLlama-1.1B's layer shapes (hidden 2048,
intermediate 5632, 32 heads / 4 KV heads of 64, 2 layers, RoPE theta 10000,
RMSNorm eps 1e-5, untied head) and a 512-token vocabulary. Its weights are not
stored: both sides generate them from a counter hash (splitmix64's
finaliser), so the C test (tests/test-engine.c) builds the identical model:

  z = mix64(seed + id * 2^32 + i * 0x9e3779b97f4a7c15)   (uint64 arithmetic, wrapping)
  u = (z >> 40) / 2^24                                    in [0, 1), exact in float64
  w = float32((2u - 1) * scale) rounded to bfloat16 (nearest even)

per tensor id (the order below) and element i (row-major, as transformers
stores it); scale = 1/sqrt(in) for projections, 1 for the embedding, and norm
weights are 1 + (2u - 1) / 10. LoRA (rank 4, alpha 8) on q, k, v, o, gate, up,
down of both layers, A and B from the same hash (ids 1000 + 2 * (layer * 7 +
target) for A, +1 for B; scales 1/sqrt(in) and 0.05), kept in float32.

The forward is written from transformers' LlamaForCausalLM (rotate_half RoPE,
causal GQA, SwiGLU) in fp32 on the bf16-valued weights; two packed sequences.
Writes tests/data/wide-ref.bin:

  magic "QTWR", u32 version 1, u32 n_seq, u32 N, u32 n_vocab, u32 n_params
  i32 seq_start[n_seq+1], i32 tokens[N], i32 targets[N]
  f32 logits[N][n_vocab]   (without the adapter)
  f32 loss                 (mean CE over targets, with the adapter)
  f32 grads[n_params]      (arena order: layer, target q..down, A (r,in) then B (out,r))

Run: /usr/bin/python3 tests/ref/make_ref_wide.py (python3-torch, python3-numpy).
"""
import os
import struct

import numpy as np
import torch

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "wide-ref.bin")

C, F, NH, NKV, L, V = 2048, 5632, 32, 4, 2, 512
HS = C // NH
EPS, THETA, RANK, ALPHA = 1e-5, 10000.0, 4, 8.0
SEED = 0x5EED
TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
SHAPE = {"q": (NH * HS, C), "k": (NKV * HS, C), "v": (NKV * HS, C), "o": (C, NH * HS),
         "gate": (F, C), "up": (F, C), "down": (C, F)}
M64 = (1 << 64) - 1


def mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(tid, n):
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = np.uint64((SEED + (tid << 32)) & M64) + i * np.uint64(0x9E3779B97F4A7C15)
        z = mix64(z)
    return (z >> np.uint64(40)).astype(np.float64) / 16777216.0


def bf16(x):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def tensor(tid, shape, kind):
    u = uniform(tid, int(np.prod(shape)))
    if kind == "norm":
        w = 1.0 + (2.0 * u - 1.0) / 10.0
    else:
        scale = 1.0 if kind == "embd" else 1.0 / np.sqrt(shape[-1])
        w = (2.0 * u - 1.0) * scale
    return torch.from_numpy(bf16(w.astype(np.float32)).reshape(shape).copy())


def weights():
    W, tid = {}, 0
    W["model.embed_tokens.weight"] = tensor(tid, (V, C), "embd"); tid += 1
    for il in range(L):
        W[f"model.layers.{il}.input_layernorm.weight"] = tensor(tid, (C,), "norm"); tid += 1
        for t in ["q", "k", "v", "o"]:
            W[f"model.layers.{il}.{PROJ[t]}.weight"] = tensor(tid, SHAPE[t], "proj"); tid += 1
        W[f"model.layers.{il}.post_attention_layernorm.weight"] = tensor(tid, (C,), "norm"); tid += 1
        for t in ["gate", "up", "down"]:
            W[f"model.layers.{il}.{PROJ[t]}.weight"] = tensor(tid, SHAPE[t], "proj"); tid += 1
    W["model.norm.weight"] = tensor(tid, (C,), "norm"); tid += 1
    W["lm_head.weight"] = tensor(tid, (V, C), "proj"); tid += 1
    return W


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(W, lora, tokens, seq_start):
    s = ALPHA / RANK
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]

    def lin(il, t, h):
        y = h @ W[f"model.layers.{il}.{PROJ[t]}.weight"].T
        if lora is None:
            return y
        A, B = lora[(il, t)]
        return y + s * ((h @ A.T) @ B.T)

    for il in range(L):
        h = rms_norm(x, W[f"model.layers.{il}.input_layernorm.weight"])
        q, k, v = lin(il, "q", h), lin(il, "k", h), lin(il, "v", h)
        outs = []
        for a, b in zip(seq_start[:-1], seq_start[1:]):
            T = b - a
            inv = 1.0 / (THETA ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
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
            att = torch.softmax(qs @ ks.transpose(-1, -2) / HS ** 0.5 + mask, -1)
            outs.append((att @ vs).transpose(0, 1).reshape(T, NH * HS))
        x = x + lin(il, "o", torch.cat(outs, 0))
        h = rms_norm(x, W[f"model.layers.{il}.post_attention_layernorm.weight"])
        x = x + lin(il, "down", torch.nn.functional.silu(lin(il, "gate", h)) * lin(il, "up", h))
    x = rms_norm(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].T


def main():
    W = weights()
    lora, order = {}, []
    for il in range(L):
        for ti, t in enumerate(TARGETS):
            out_d, in_d = SHAPE[t]
            tid = 1000 + 2 * (il * len(TARGETS) + ti)
            A = torch.from_numpy(((2 * uniform(tid, RANK * in_d) - 1) / np.sqrt(in_d)).astype(np.float32).reshape(RANK, in_d))
            B = torch.from_numpy(((2 * uniform(tid + 1, out_d * RANK) - 1) * 0.05).astype(np.float32).reshape(out_d, RANK))
            A.requires_grad_(True)
            B.requires_grad_(True)
            lora[(il, t)] = (A, B)
            order += [A, B]
    rng = np.random.default_rng(77)
    seqs = [[1] + rng.integers(3, V, 23).tolist(), [1] + rng.integers(3, V, 16).tolist()]
    tokens, targets, seq_start = [], [], [0]
    for si, sq in enumerate(seqs):
        tokens += sq[:-1]
        tg = sq[1:]
        if si == 1:
            tg = [-1] * 4 + tg[4:]   # a masked prompt
        targets += tg
        seq_start.append(len(tokens))
    with torch.no_grad():
        logits = forward(W, None, tokens, seq_start)
    loss = torch.nn.functional.cross_entropy(forward(W, lora, tokens, seq_start), torch.tensor(targets), ignore_index=-1)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in order]).numpy()
    with open(OUT, "wb") as f:
        f.write(b"QTWR")
        f.write(struct.pack("<IIIII", 1, len(seqs), len(tokens), V, len(grads)))
        f.write(np.asarray(seq_start, "<i4").tobytes())
        f.write(np.asarray(tokens, "<i4").tobytes())
        f.write(np.asarray(targets, "<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(grads.astype("<f4").tobytes())
    print(f"wrote {OUT}: {len(tokens)} tokens, |logit| max {logits.abs().max().item():.3f}, "
          f"loss {loss.item():.6f}, {len(grads)} adapter parameters")


if __name__ == "__main__":
    main()
