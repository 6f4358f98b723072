#!/usr/bin/env python3
"""Tiny random GPT-2, Gemma and Phi-3 models in Hugging Face layout, with an
independent PyTorch fp32 reference of their logits and of LoRA gradients.

transformers is not used (nor installed here): each folder is written as
transformers names and shapes the tensors (save_pretrained's layout), and
each forward below is written from the published definitions:
  tests/data/tiny-gpt2/   GPT2LMHeadModel (modeling_gpt2.py): Conv1D weights
                          stored [in, out], fused c_attn, learned positions,
                          LayerNorm with bias, gelu_new, tied head, no lm_head
  tests/data/tiny-gemma/  GemmaForCausalLM (modeling_gemma.py): RMSNorm * (1 + w),
                          embedding * sqrt(hidden), head_dim 16 with 4 heads on
                          hidden 32 (n_head * head_dim != hidden), 1 KV head,
                          GeGLU with gelu_pytorch_tanh, tied head
  tests/data/tiny-phi3/   Phi3ForCausalLM (modeling_phi3.py): fused qkv_proj
                          (GQA 4/2) and gate_up_proj (gate rows first),
                          sliding_window 48, separate lm_head, vocabulary
                          padded past the tokenizer's
All three carry the same tiny byte-level BPE tokenizer.json (256 byte
symbols, merges learned here from data/demo, <|endoftext|>), in the
tokenizers library's GPT-2 serialization, and a tokenizer_config.json
(GPT-2's: the default chat template DialoGPT uses).

ref.bin per folder (little endian):
  magic "QTDR", u32 version 1
  u32 n_tokens, u32 n_vocab, i32 tokens[n_tokens], f32 logits[n_tokens][n_vocab]
  u32 rank, f32 alpha, u32 n_params, u32 n_seq, u32 N,
  i32 seq_start[n_seq + 1], i32 tokens[N], i32 targets[N] (-1: not trained),
  f32 params0[n_params]   LoRA on every linear of every layer, in qtune's arena
                          order: layer, linear (the arch-*.c table order), A (r, in)
                          then B (out, r); A and B random, both non-zero
  f32 loss0               mean cross-entropy over the targets, sequences packed
                          (attention and positions restart at each sequence)
  f32 grads0[n_params]    d loss0 / d params by autograd
Run: /usr/bin/python3 tests/ref/make_ref_dense.py  (Debian python3-torch, python3-numpy)
"""
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_ref_logits import rms_norm, rotate_half  # noqa: E402
from make_ref_tiny import write_safetensors  # noqa: E402

DATA = os.path.join(HERE, "..", "data")
DEMO = os.path.join(HERE, "..", "..", "data", "demo", "train.jsonl")
RANK, ALPHA = 4, 8.0
N_MERGES = 40
EOT = "<|endoftext|>"


# ---- tokenizer -----------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make_tokenizer():
    """Byte-level BPE: 256 byte symbols, N_MERGES merges learned greedily on data/demo, <|endoftext|>."""
    b2u = bytes_to_unicode()
    text = " ".join(json.loads(line)["text"] for line in open(DEMO, encoding="utf-8"))
    # GPT-2's pre-tokenizer on ASCII text: letters, digits, other symbols, each with an optional leading space
    words = [tuple(b2u[b] for b in w.encode()) for w in re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", text)]
    vocab = [b2u[b] for b in range(256)]
    merges = []
    for _ in range(N_MERGES):
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(a + " " + b)
        vocab.append(a + b)
        out = []
        for w in words:
            i, nw = 0, []
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            out.append(tuple(nw))
        words = out
    vocab.append(EOT)
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": len(vocab) - 1, "content": EOT, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None, "pre_tokenizer": bl, "post_processor": dict(bl, trim_offsets=False),
        "decoder": bl,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(vocab)}, "merges": merges},
    }
    cfg = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "add_bos_token": False, "model_max_length": 64,
           "tokenizer_class": "GPT2Tokenizer",
           "chat_template": "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"}
    return tok, cfg, len(vocab)


# ---- the three forwards, with LoRA on every linear ----------------------------------

def lin(x, W, b, lora, key, conv1d=False):
    """y = x W^T (+ b) (Conv1D: x W, W stored [in, out]) + s * (x A^T) B^T, as PEFT's lora.Linear."""
    y = x @ W if conv1d else x @ W.T
    if b is not None:
        y = y + b
    if lora is not None:
        A, B = lora[key]
        y = y + (ALPHA / RANK) * ((x @ A.T) @ B.T)
    return y


def causal_attention(q, k, v, NH, NKV, HS):
    """q (T, NH*HS), k, v (T, NKV*HS) -> (T, NH*HS); scale 1/sqrt(HS), query head h reads kv head h // (NH/NKV)."""
    T = q.shape[0]
    q = q.view(T, NH, HS).transpose(0, 1)
    k = k.view(T, NKV, HS).transpose(0, 1).repeat_interleave(NH // NKV, 0)
    v = v.view(T, NKV, HS).transpose(0, 1).repeat_interleave(NH // NKV, 0)
    mask = torch.full((T, T), float("-inf")).triu(1)
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HS) + mask, -1)
    return (att @ v).transpose(0, 1).reshape(T, NH * HS)


def rope(x, n_heads, HS, theta):
    """rotate_half RoPE (transformers' apply_rotary_pos_emb) at positions 0..T-1."""
    T = x.shape[0]
    inv = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.int64).float() / HS))
    ang = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat((ang, ang), -1)
    x = x.view(T, n_heads, HS)
    return (x * emb.cos()[:, None, :] + rotate_half(x) * emb.sin()[:, None, :]).reshape(T, n_heads * HS)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_forward(W, cfg, tokens, lora):
    C, NH, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    T, p = len(tokens), "transformer."
    x = W[p + "wte.weight"][torch.tensor(tokens)] + W[p + "wpe.weight"][torch.arange(T)]
    for il in range(cfg["n_layer"]):
        h = f"{p}h.{il}."
        a = F.layer_norm(x, (C,), W[h + "ln_1.weight"], W[h + "ln_1.bias"], eps)
        qkv = lin(a, W[h + "attn.c_attn.weight"], W[h + "attn.c_attn.bias"], lora, (il, "qkv"), True)
        q, k, v = qkv.split(C, dim=-1)
        a = causal_attention(q, k, v, NH, NH, C // NH)
        x = x + lin(a, W[h + "attn.c_proj.weight"], W[h + "attn.c_proj.bias"], lora, (il, "o"), True)
        a = F.layer_norm(x, (C,), W[h + "ln_2.weight"], W[h + "ln_2.bias"], eps)
        a = gelu_new(lin(a, W[h + "mlp.c_fc.weight"], W[h + "mlp.c_fc.bias"], lora, (il, "up"), True))
        x = x + lin(a, W[h + "mlp.c_proj.weight"], W[h + "mlp.c_proj.bias"], lora, (il, "down"), True)
    x = F.layer_norm(x, (C,), W[p + "ln_f.weight"], W[p + "ln_f.bias"], eps)
    return x @ W[p + "wte.weight"].T


def gemma_forward(W, cfg, tokens, lora):
    C, NH, NKV, HS = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)] * torch.tensor(C ** 0.5, dtype=torch.float32)
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, 1.0 + W[p + "input_layernorm.weight"], eps)
        q = rope(lin(h, W[p + "self_attn.q_proj.weight"], None, lora, (il, "q")), NH, HS, theta)
        k = rope(lin(h, W[p + "self_attn.k_proj.weight"], None, lora, (il, "k")), NKV, HS, theta)
        v = lin(h, W[p + "self_attn.v_proj.weight"], None, lora, (il, "v"))
        x = x + lin(causal_attention(q, k, v, NH, NKV, HS), W[p + "self_attn.o_proj.weight"], None, lora, (il, "o"))
        h = rms_norm(x, 1.0 + W[p + "post_attention_layernorm.weight"], eps)
        g = F.gelu(lin(h, W[p + "mlp.gate_proj.weight"], None, lora, (il, "gate")), approximate="tanh")
        x = x + lin(g * lin(h, W[p + "mlp.up_proj.weight"], None, lora, (il, "up")), W[p + "mlp.down_proj.weight"],
                    None, lora, (il, "down"))
    x = rms_norm(x, 1.0 + W["model.norm.weight"], eps)
    return x @ W["model.embed_tokens.weight"].T


def phi3_forward(W, cfg, tokens, lora):
    C, NH, NKV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HS, Fd, eps, theta = C // NH, cfg["intermediate_size"], cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        qkv = lin(h, W[p + "self_attn.qkv_proj.weight"], None, lora, (il, "qkv"))
        q, k, v = qkv[:, :NH * HS], qkv[:, NH * HS:(NH + NKV) * HS], qkv[:, (NH + NKV) * HS:]
        a = causal_attention(rope(q, NH, HS, theta), rope(k, NKV, HS, theta), v, NH, NKV, HS)
        x = x + lin(a, W[p + "self_attn.o_proj.weight"], None, lora, (il, "o"))
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate, up = lin(h, W[p + "mlp.gate_up_proj.weight"], None, lora, (il, "gate_up")).chunk(2, dim=-1)
        assert gate.shape[-1] == Fd
        x = x + lin(up * F.silu(gate), W[p + "mlp.down_proj.weight"], None, lora, (il, "down"))
    x = rms_norm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


# ---- the models ---------------------------------------------------------------------

def gpt2_model(r, V):
    C, L, NP, Fd = 32, 2, 64, 128
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V, "n_positions": NP,
           "n_ctx": NP, "n_embd": C, "n_layer": L, "n_head": 4, "n_inner": None, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "bos_token_id": V - 1, "eos_token_id": V - 1, "scale_attn_weights": True}
    W = {"transformer.wte.weight": r(V, C), "transformer.wpe.weight": r(NP, C),
         "transformer.ln_f.weight": 1 + r(C), "transformer.ln_f.bias": r(C)}
    for il in range(L):
        h = f"transformer.h.{il}."
        W.update({h + "ln_1.weight": 1 + r(C), h + "ln_1.bias": r(C), h + "ln_2.weight": 1 + r(C), h + "ln_2.bias": r(C),
                  h + "attn.c_attn.weight": r(C, 3 * C), h + "attn.c_attn.bias": r(3 * C),   # Conv1D: [in, out]
                  h + "attn.c_proj.weight": r(C, C), h + "attn.c_proj.bias": r(C),
                  h + "mlp.c_fc.weight": r(C, Fd), h + "mlp.c_fc.bias": r(Fd),
                  h + "mlp.c_proj.weight": r(Fd, C), h + "mlp.c_proj.bias": r(C)})
    # (out, in) of each linear in the arch-gpt2.c table order
    lins = [("qkv", 3 * C, C), ("o", C, C), ("up", Fd, C), ("down", C, Fd)]
    return cfg, W, lins, gpt2_forward


def gemma_model(r, V):
    C, L, NH, NKV, HS, Fd = 32, 2, 4, 1, 16, 64
    cfg = {"model_type": "gemma", "architectures": ["GemmaForCausalLM"], "vocab_size": V, "hidden_size": C,
           "intermediate_size": Fd, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "head_dim": HS, "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh",
           "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
           "tie_word_embeddings": True, "bos_token_id": V - 1, "eos_token_id": V - 1}
    # norm weights are stored as w - 1 (the scale is 1 + w)
    W = {"model.embed_tokens.weight": r(V, C), "model.norm.weight": r(C)}
    for il in range(L):
        p = f"model.layers.{il}."
        W.update({p + "input_layernorm.weight": r(C), p + "post_attention_layernorm.weight": r(C),
                  p + "self_attn.q_proj.weight": r(NH * HS, C), p + "self_attn.k_proj.weight": r(NKV * HS, C),
                  p + "self_attn.v_proj.weight": r(NKV * HS, C), p + "self_attn.o_proj.weight": r(C, NH * HS),
                  p + "mlp.gate_proj.weight": r(Fd, C), p + "mlp.up_proj.weight": r(Fd, C),
                  p + "mlp.down_proj.weight": r(C, Fd)})
    lins = [("q", NH * HS, C), ("k", NKV * HS, C), ("v", NKV * HS, C), ("o", C, NH * HS), ("gate", Fd, C),
            ("up", Fd, C), ("down", C, Fd)]
    return cfg, W, lins, gemma_forward


def phi3_model(r, V):
    C, L, NH, NKV, Fd = 32, 2, 4, 2, 64
    HS = C // NH
    op = (NH + 2 * NKV) * HS
    cfg = {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "vocab_size": V, "hidden_size": C,
           "intermediate_size": Fd, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "hidden_act": "silu", "max_position_embeddings": 128, "original_max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "sliding_window": 48,
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
    W = {"model.embed_tokens.weight": r(V, C), "model.norm.weight": 1 + r(C), "lm_head.weight": r(V, C)}
    for il in range(L):
        p = f"model.layers.{il}."
        W.update({p + "input_layernorm.weight": 1 + r(C), p + "post_attention_layernorm.weight": 1 + r(C),
                  p + "self_attn.qkv_proj.weight": r(op, C), p + "self_attn.o_proj.weight": r(C, NH * HS),
                  p + "mlp.gate_up_proj.weight": r(2 * Fd, C), p + "mlp.down_proj.weight": r(C, Fd)})
    lins = [("qkv", op, C), ("o", C, NH * HS), ("gate_up", 2 * Fd, C), ("down", C, Fd)]
    return cfg, W, lins, phi3_forward


def make(name, builder, V, seed, tok, tok_cfg):
    rng = np.random.default_rng(seed)
    r = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    cfg, W, lins, forward = builder(r, V)
    d = os.path.join(DATA, name)
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    json.dump(tok_cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    write_safetensors(os.path.join(d, "model.safetensors"), W)
    Wt = {k: torch.from_numpy(v) for k, v in W.items()}

    tokens = [int(t) for t in rng.integers(0, V, size=24)]
    with torch.no_grad():
        logits = forward(Wt, cfg, tokens, None)

    # LoRA: A ~ U(-1, 1) / sqrt(in), B ~ N(0, 0.05^2), arena order
    L = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    lora, order = {}, []
    for il in range(L):
        for key, n_out, n_in in lins:
            A = torch.tensor(rng.uniform(-1, 1, (RANK, n_in)) / np.sqrt(n_in), dtype=torch.float32, requires_grad=True)
            B = torch.tensor(rng.standard_normal((n_out, RANK)) * 0.05, dtype=torch.float32, requires_grad=True)
            lora[(il, key)] = (A, B)
            order += [A, B]
    seqs = [[int(t) for t in rng.integers(0, V, size=13)], [int(t) for t in rng.integers(0, V, size=8)]]
    btok, btgt, seq_start = [], [], [0]
    for si, sq in enumerate(seqs):
        btok += sq[:-1]
        tg = sq[1:]
        if si == 0:
            tg = [-1, -1, -1] + tg[3:]   # a masked prompt
        btgt += tg
        seq_start.append(len(btok))
    out = torch.cat([forward(Wt, cfg, btok[a:b], lora) for a, b in zip(seq_start[:-1], seq_start[1:])], 0)
    loss = F.cross_entropy(out, torch.tensor(btgt), ignore_index=-1)
    loss.backward()
    params0 = torch.cat([p.detach().flatten() for p in order]).numpy()
    grads0 = torch.cat([p.grad.flatten() for p in order]).numpy()

    with open(os.path.join(d, "ref.bin"), "wb") as f:
        f.write(b"QTDR" + struct.pack("<III", 1, len(tokens), V))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<IfIII", RANK, ALPHA, len(params0), len(seqs), len(btok)))
        f.write(np.asarray(seq_start, dtype="<i4").tobytes())
        f.write(np.asarray(btok, dtype="<i4").tobytes())
        f.write(np.asarray(btgt, dtype="<i4").tobytes())
        f.write(params0.astype("<f4").tobytes())
        f.write(struct.pack("<f", loss.item()))
        f.write(grads0.astype("<f4").tobytes())
    print(f"{name}: logits {tuple(logits.shape)}, |logit| max {logits.abs().max():.2f}, "
          f"LoRA {len(params0)} params, loss {loss.item():.6f}")


def main():
    tok, tok_cfg, n_tok = make_tokenizer()
    make("tiny-gpt2", gpt2_model, n_tok, 11, tok, tok_cfg)
    make("tiny-gemma", gemma_model, n_tok + 3, 12, tok, tok_cfg)
    make("tiny-phi3", phi3_model, n_tok + 5, 13, tok, tok_cfg)


if __name__ == "__main__":
    main()
