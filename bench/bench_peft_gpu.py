#!/usr/bin/env python3
"""The GPU peer of bench-train (QT_DEVICE=cuda): a Hugging Face PEFT LoRA
training step on one CUDA GPU, the way the CUDA issue states it:
transformers LlamaForCausalLM with the preset's shapes and random weights
created directly on the GPU in bf16, SDPA attention, peft LoRA r=16
(alpha 32) on q, k, v, o, gate (adapters in float32, PEFT's default), bf16
autocast, AdamW, `batch` sequences of T random tokens per step, no gradient
checkpointing (PEFT's default).

  python3 bench/bench_peft_gpu.py [preset=tinyllama] [T=512] [batch=8] [steps=5]

Presets: tinyllama (2048, 5632, 22 layers, 32/4 heads, vocab 32000),
llama2-7b (4096, 11008, 32 layers, 32/32 heads). Prints tokens/s (median
step after two warm-up steps, timed with CUDA synchronisation) and the peak
of torch.cuda.max_memory_allocated, as one markdown row.
"""
import sys
import time

import torch
import transformers
import peft
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000),
}
preset = sys.argv[1] if len(sys.argv) > 1 else "tinyllama"
T = int(sys.argv[2]) if len(sys.argv) > 2 else 512
B = int(sys.argv[3]) if len(sys.argv) > 3 else 8
STEPS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
WARMUP = 2

torch.manual_seed(0)
dev = torch.device("cuda")
cfg = LlamaConfig(**PRESETS[preset], max_position_embeddings=max(T, 2048), rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False, use_cache=False, attn_implementation="sdpa")
t0 = time.time()
torch.set_default_dtype(torch.bfloat16)   # weights created in bf16 on the GPU: no float32 copy
with dev:
    model = LlamaForCausalLM(cfg)
torch.set_default_dtype(torch.float32)
model.config.use_cache = False
lcfg = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])
model = peft.get_peft_model(model, lcfg)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
n_train = sum(p.numel() for p in params)
print(f"{preset}: built in {time.time() - t0:.1f} s, {n_train / 1e6:.1f} M trainable parameters "
      f"({params[0].dtype}), attention {getattr(model.config, '_attn_implementation', '?')}", file=sys.stderr)

times = []
for s in range(WARMUP + STEPS):
    tok = torch.randint(0, cfg.vocab_size, (B, T), device=dev)
    torch.cuda.synchronize()
    t0 = time.time()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=tok, labels=tok).loss
    loss.backward()
    opt.step()
    torch.cuda.synchronize()
    dt = time.time() - t0
    if s >= WARMUP:
        times.append(dt)
    print(f"step {s}: {dt:.3f} s, loss {loss.item():.4f}", file=sys.stderr)
med = sorted(times)[len(times) // 2]
peak = torch.cuda.max_memory_allocated() / 1073741824.0
print(f"| peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__} | {preset} | "
      f"T={T} batch {B} | r=16 q,k,v,o,gate | {B * T / med:.1f} tokens/s | {med:.3f} s/step | peak GPU {peak:.2f} GiB | "
      f"{torch.cuda.get_device_name()} |")
