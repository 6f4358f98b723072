#!/usr/bin/env python3
"""Tiny random-weight Mixtral (sparse mixture of experts) in Hugging Face
layout, with an independent PyTorch fp32 reference of its logits and of LoRA
gradients (autograd, no transformers, no PEFT: transformers is not installed
here, so the model is written from modeling_mixtral.py's definition).

tests/data/tiny-mixtral/
  config.json          model_type "mixtral", num_local_experts 4, num_experts_per_tok 2
  model.safetensors    transformers' names and shapes: model.layers.N.block_sparse_moe.gate.weight (E, C),
                       ...block_sparse_moe.experts.E.w1.weight (F, C), w2 (C, F), w3 (F, C), Llama's attention
  ref.bin              logits of 24 tokens: magic "QTRF", u32 version 1, u32 n_tokens, u32 n_vocab,
                       u32 n_greedy = 0, i32 tokens[n_tokens], f32 logits[n_tokens][n_vocab]
  lora-ref.bin         LoRA (rank 4, alpha 8, A and B random) on q, k, v, o, every expert's w1, w2, w3 and
                       the router, a packed batch of two sequences:
                       magic "QTMX", u32 version 1, u32 rank, f32 alpha, u32 target_mask (qtune's linear order
                       q k v o w1 w2 w3 router), u32 n_params, u32 n_seq, u32 N, i32 seq_start[n_seq+1],
                       i32 tokens[N], i32 targets[N], f32 params0[n_params] (arena order: layer, linear,
                       expert, A (r, in) then B (out, r)), f32 loss0 (mean CE), f32 grads0[n_params]

The MoE block is MixtralSparseMoeBlock.forward: softmax of the router logits
in float, torch.topk, weights divided by their sum, each expert's
w2(silu(w1 x) * w3 x) over its tokens, index_add_ of the weighted outputs.
The script checks that no token's K-th and (K+1)-th routing probabilities are
closer than MIN_GAP, so a float32 rounding difference between two correct
implementations cannot flip an expert choice.

Run: /usr/bin/python3 tests/ref/make_ref_mixtral.py   (python3-torch, python3-numpy)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_ref_logits import load_safetensors  # noqa: E402
from make_ref_tiny import write_safetensors  # noqa: E402

DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "tiny-mixtral")
CFG = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=64, intermediate_size=128,
           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
           max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=1000000.0, hidden_act="silu",
           num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False, sliding_window=None,
           router_aux_loss_coef=0.02, output_router_logits=False, router_jitter_noise=0.0, bos_token_id=1,
           eos_token_id=2, torch_dtype="float32")
LINEARS = ["q", "k", "v", "o", "w1", "w2", "w3", "router"]   # qtune's order (arch-mixtral.c)
EXPERT = {"w1", "w2", "w3"}
RANK, ALPHA = 4, 8.0
MIN_GAP = 1e-4
gaps = []


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def weight_name(il, t, e):
    p = f"model.layers.{il}."
    if t in EXPERT:
        return p + f"block_sparse_moe.experts.{e}.{t}.weight"
    if t == "router":
        return p + "block_sparse_moe.gate.weight"
    return p + f"self_attn.{t}_proj.weight"


def forward(W, cfg, tokens, seq_start, lora=None):
    """Mixtral forward over packed sequences; lora: {(il, t, e): (A, B)} or None."""
    C, NH, NKV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS, eps, E, K = C // NH, cfg["rms_norm_eps"], cfg["num_local_experts"], cfg["num_experts_per_tok"]
    s = ALPHA / RANK
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]

    def lin(il, t, h, e=None):
        y = h @ W[weight_name(il, t, e)].T
        if lora is not None and (il, t, e) in lora:
            A, B = lora[(il, t, e)]
            y = y + s * ((h @ A.T) @ B.T)
        return y

    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q, k, v = lin(il, "q", h), lin(il, "k", h), lin(il, "v", h)
        outs = []
        for a, b in zip(seq_start[:-1], seq_start[1:]):
            T = b - a
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
            att = torch.softmax(qs @ ks.transpose(-1, -2) / math.sqrt(HS) + mask, -1)
            outs.append((att @ vs).transpose(0, 1).reshape(T, NH * HS))
        x = x + lin(il, "o", torch.cat(outs, 0))
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        # MixtralSparseMoeBlock
        router_logits = lin(il, "router", h)
        routing = torch.softmax(router_logits, dim=1, dtype=torch.float)
        srt = torch.sort(routing.detach(), dim=-1, descending=True).values
        gaps.append(float((srt[:, K - 1] - srt[:, K]).min()))
        routing, selected = torch.topk(routing, K, dim=-1)
        routing = routing / routing.sum(dim=-1, keepdim=True)
        final = torch.zeros_like(h)
        mask_e = torch.nn.functional.one_hot(selected, num_classes=E).permute(2, 1, 0)
        for e in range(E):
            idx, top_x = torch.where(mask_e[e])
            if top_x.numel() == 0:
                continue
            cur = h[top_x]
            y = lin(il, "w2", torch.nn.functional.silu(lin(il, "w1", cur, e)) * lin(il, "w3", cur, e), e)
            final = final.index_add(0, top_x, y * routing[top_x, idx, None])
        x = x + final
    x = rms_norm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


def make_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    C, F, V, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_local_experts"]
    NH, NKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS = C // NH
    r = lambda *s: (rng.standard_normal(s) / math.sqrt(s[-1])).astype(np.float32)
    W = {"model.embed_tokens.weight": r(V, C), "model.norm.weight": 1 + 0.1 * r(C), "lm_head.weight": r(V, C)}
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        W[p + "input_layernorm.weight"] = 1 + 0.1 * r(C)
        W[p + "post_attention_layernorm.weight"] = 1 + 0.1 * r(C)
        W[p + "self_attn.q_proj.weight"] = r(NH * HS, C)
        W[p + "self_attn.k_proj.weight"] = r(NKV * HS, C)
        W[p + "self_attn.v_proj.weight"] = r(NKV * HS, C)
        W[p + "self_attn.o_proj.weight"] = r(C, NH * HS)
        W[p + "block_sparse_moe.gate.weight"] = 3 * r(E, C)   # spread routing probabilities apart
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            W[q + "w1.weight"] = r(F, C)
            W[q + "w2.weight"] = r(C, F)
            W[q + "w3.weight"] = r(F, C)
    return W


def load_model(folder):
    return load_safetensors(os.path.join(folder, "model.safetensors"))


def make_lora(W, cfg, rng):
    lora, order = {}, []
    for il in range(cfg["num_hidden_layers"]):
        for t in LINEARS:
            for e in (range(cfg["num_local_experts"]) if t in EXPERT else [None]):
                out_d, in_d = W[weight_name(il, t, e)].shape
                A = torch.tensor(rng.uniform(-1, 1, (RANK, in_d)) / np.sqrt(in_d), dtype=torch.float32,
                                 requires_grad=True)
                B = torch.tensor(rng.standard_normal((out_d, RANK)) * 0.05, dtype=torch.float32, requires_grad=True)
                lora[(il, t, e)] = (A, B)
                order += [A, B]
    return lora, order


def batch(V, rng):
    seqs = [[1] + [int(t) for t in rng.integers(3, V, 12)], [1] + [int(t) for t in rng.integers(3, V, 7)]]
    tokens, targets, seq_start = [], [], [0]
    for si, sq in enumerate(seqs):
        tokens += sq[:-1]
        tg = sq[1:]
        if si == 0:
            tg = [-1, -1, -1] + tg[3:]   # a masked prompt
        targets += tg
        seq_start.append(len(tokens))
    return tokens, targets, seq_start


def write_lora_ref(path, W, cfg, seed):
    rng = np.random.default_rng(seed)
    lora, order = make_lora(W, cfg, rng)
    tokens, targets, seq_start = batch(cfg["vocab_size"], rng)
    logits = forward(W, cfg, tokens, seq_start, lora)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets), ignore_index=-1)
    loss.backward()
    params0 = torch.cat([p.detach().flatten() for p in order]).numpy()
    grads0 = torch.cat([p.grad.flatten() for p in order]).numpy()
    with open(path, "wb") as f:
        f.write(b"QTMX" + struct.pack("<IIfIII", 1, RANK, ALPHA, (1 << len(LINEARS)) - 1, len(params0), 2))
        f.write(struct.pack("<I", len(tokens)))
        f.write(np.asarray(seq_start, "<i4").tobytes())
        f.write(np.asarray(tokens, "<i4").tobytes())
        f.write(np.asarray(targets, "<i4").tobytes())
        f.write(params0.astype("<f4").tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(grads0.astype("<f4").tobytes())
    print(f"wrote {path}: {len(params0)} params, loss {loss.item():.6f}")


def write_logits_ref(path, W, cfg, tokens):
    with torch.no_grad():
        logits = forward(W, cfg, tokens, [0, len(tokens)])
    with open(path, "wb") as f:
        f.write(b"QTRF" + struct.pack("<IIII", 1, len(tokens), cfg["vocab_size"], 0))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
    print(f"wrote {path}: logits {tuple(logits.shape)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    W = make_weights(CFG, 11)
    json.dump(CFG, open(os.path.join(OUT, "config.json"), "w"), indent=1)
    write_safetensors(os.path.join(OUT, "model.safetensors"), W)
    Wt = {k: torch.from_numpy(v) for k, v in W.items()}
    rng = np.random.default_rng(5)
    tokens = [1] + [int(t) for t in rng.integers(3, CFG["vocab_size"], 23)]
    write_logits_ref(os.path.join(OUT, "ref.bin"), Wt, CFG, tokens)
    write_lora_ref(os.path.join(OUT, "lora-ref.bin"), Wt, CFG, 17)
    print(f"smallest gap between the K-th and (K+1)-th routing probability: {min(gaps):.2e}")
    assert min(gaps) > MIN_GAP, "an expert choice is too close to call: change a seed"


if __name__ == "__main__":
    main()
