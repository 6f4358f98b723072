#!/usr/bin/env python3
"""The PyTorch peer for bench-train: LoRA training step of a Llama-shaped
model with random bf16 weights (frozen), fp32 LoRA adapters, bf16 autocast
on CPU, AdamW. Batch 1, one sequence of T tokens.

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/bench_torch_lora.py \
      [preset=tinyllama] [T=512] [steps=3] [threads=2] [rank=16] [dtype=bf16|fp32]

dtype bf16 (the issue's peer): frozen weights in bf16, bf16 autocast. On a
CPU without AVX-512 BF16 PyTorch emulates bf16 and is very slow, so fp32
(weights and compute in float32) is the fair peer there.

Presets: tinyllama (2048, 5632, 22 layers, 32/4 heads, vocab 32000), llama2-7b.
Prints tokens/s (median after a warm-up step) and peak RSS, in the same
table format as bench-train.
"""
import math
import resource
import sys
import time

import torch

PRESETS = {
    "tinyllama": dict(C=2048, F=5632, L=22, NH=32, NKV=4, V=32000),
    "llama2-7b": dict(C=4096, F=11008, L=32, NH=32, NKV=32, V=32000),
    "stories260k": dict(C=64, F=172, L=5, NH=8, NKV=4, V=512),
}
preset = sys.argv[1] if len(sys.argv) > 1 else "tinyllama"
T = int(sys.argv[2]) if len(sys.argv) > 2 else 512
STEPS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
THREADS = int(sys.argv[4]) if len(sys.argv) > 4 else 2
R = int(sys.argv[5]) if len(sys.argv) > 5 else 16
DTYPE = sys.argv[6] if len(sys.argv) > 6 else "bf16"
WDT = torch.bfloat16 if DTYPE == "bf16" else torch.float32
P = PRESETS[preset]
torch.set_num_threads(THREADS)
torch.manual_seed(0)
C, F, L, NH, NKV, V = P["C"], P["F"], P["L"], P["NH"], P["NKV"], P["V"]
HS = C // NH


class LoRALinear(torch.nn.Module):
    def __init__(self, n_in, n_out, lora):
        super().__init__()
        self.weight = torch.nn.Parameter((torch.randn(n_out, n_in) * 0.02).to(WDT), requires_grad=False)
        self.lora = lora
        if lora:
            self.A = torch.nn.Parameter(torch.empty(R, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.B = torch.nn.Parameter(torch.zeros(n_out, R))

    def forward(self, x):
        y = torch.nn.functional.linear(x, self.weight)
        if self.lora:
            y = y + 2.0 * torch.nn.functional.linear(torch.nn.functional.linear(x, self.A), self.B)
        return y


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = LoRALinear(C, NH * HS, True), LoRALinear(C, NKV * HS, True), LoRALinear(C, NKV * HS, True)
        self.o, self.gate = LoRALinear(NH * HS, C, True), LoRALinear(C, F, True)
        self.up, self.down = LoRALinear(C, F, False), LoRALinear(F, C, False)
        self.n1 = torch.nn.Parameter(torch.ones(C), requires_grad=False)
        self.n2 = torch.nn.Parameter(torch.ones(C), requires_grad=False)

    def forward(self, x, cos, sin):
        def norm(h, w):
            return h * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(h.dtype) * w

        def rot(h):
            a, b = h[..., : HS // 2], h[..., HS // 2 :]
            return torch.cat((-b, a), -1)

        h = norm(x, self.n1)
        q = self.q(h).view(T, NH, HS).transpose(0, 1)
        k = self.k(h).view(T, NKV, HS).transpose(0, 1)
        v = self.v(h).view(T, NKV, HS).transpose(0, 1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(NH // NKV, 0), v.repeat_interleave(NH // NKV, 0)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(
            torch.nn.functional, "scaled_dot_product_attention") else torch.softmax(
            (q @ k.transpose(-1, -2)) / math.sqrt(HS) + torch.full((T, T), float("-inf")).triu(1), -1) @ v
        x = x + self.o(a.transpose(0, 1).reshape(T, NH * HS))
        h = norm(x, self.n2)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


emb = (torch.randn(V, C) * 0.02).to(WDT)
head = LoRALinear(C, V, False)
blocks = torch.nn.ModuleList([Block() for _ in range(L)])
params = [p for p in blocks.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
tok = torch.randint(0, V, (T + 1,))
inv = 1.0 / (10000 ** (torch.arange(0, HS, 2).float() / HS))
ang = torch.arange(T).float()[:, None] * inv[None, :]
cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
times = []
for s in range(STEPS + 1):
    t0 = time.time()
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=DTYPE == "bf16"):
        x = emb[tok[:-1]]
        for b in blocks:
            x = b(x, cos, sin)
        logits = head(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), tok[1:])
    loss.backward()
    opt.step()
    times.append(time.time() - t0)
    print(f"step {s}: {times[-1]:.2f} s, loss {loss.item():.4f}", file=sys.stderr)
med = sorted(times[1:])[len(times[1:]) // 2]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576.0
p_mm = L * C * (2 * NH * HS + 2 * NKV * HS + 3 * F) + C * V
flop = 4 * p_mm * T + 6 * L * NH * HS * T * T   # as bench-train.c counts it
print(f"| pytorch {torch.__version__} {DTYPE} | {preset} | T={T} | r={R} q,k,v,o,gate | threads {THREADS} | "
      f"{T / med:.1f} tokens/s | {med:.1f} s/step | {flop / med / 1e9:.1f} GFLOP/s | peak RSS {rss:.2f} GiB |")
