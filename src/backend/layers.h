// layers.h: the CPU backend's layer functions (forward), llm.c style:
// outputs first, then saved tensors, inputs, parameters, dimensions. Shapes
// use T (tokens), C (n_embd), NH/NKV (query/key-value heads), HS (head size),
// F (n_ff). layers-train.h has a _backward for each, with the same argument
// order; the saved tensors (rstd, ...) are what those backward passes need.
// backend-cpu.c wraps these into the qt_backend_ops table; the model code
// above calls the table, never these directly.
#ifndef QT_LAYERS_H
#define QT_LAYERS_H

#include <stdint.h>

#include "base/pool.h"
#include "kernels/kernels.h"
#include "backend/backend.h"

// out (T, C) = x / sqrt(mean(x^2) + eps) * w; rstd (T) is saved when non-NULL
// (the table's rmsnorm_f32 per row).
void qt_rmsnorm_forward(const qt_kernel_table *K, float *out, float *rstd, const float *x, const float *w, int64_t T,
                        int64_t C, float eps);

// RoPE tables for T positions: cs (T, HS/2, 2) holds cos, sin of pos[t] * freq_i,
// freq_i = theta^(-2i/HS) / freq_factors[i] (freq_factors may be NULL).
void qt_rope_cache(float *cs, const int *pos, int64_t T, int HS, float theta, const float *freq_factors);
// In-place rotation of x (T, NHX, HS). NORM rotates pairs (2i, 2i+1) (GGUF
// llama); NEOX rotates (i, i + HS/2) (HF rotate_half, qwen2).
void qt_rope_forward(float *x, const float *cs, int64_t T, int NHX, int HS, qt_rope_type type);

// Causal grouped-query attention of several sequences, each over its own
// KV cache (one layer's). Per sequence: out (T, NH*HS); q (T, NH*HS) for
// positions pos0 .. pos0+T-1; kc (NKV, n_ctx, HS): keys, head-major so each
// head's keys are a dense matrix; vt (NKV, HS, n_ctx): values transposed, so
// P @ V is a matmul whose weight rows are contiguous. Positions
// 0 .. pos0+T-1 must be filled. Query head h reads key/value head h / (NH/NKV).
// Short sequences (decode) run together, one (sequence, token, head) task
// per thread in one pool run; long ones (prompts) run one after the other
// per key/value head as two matmuls, S = Q K^T and O = softmax(S) V, with
// the causal mask applied to S.
// scratch: qt_attention_scratch() floats (n_batch: the most tokens of one
// sequence). kv_type: the cache's elements, F32 or F16 (each product
// widens them to float: dot_f32_f16 per task, the matmuls' F16 weights).
typedef struct {
    float *out;
    const float *q;
    const void *kc, *vt;
    int T, pos0;
} qt_attn_seq;
void qt_attention_forward(const qt_kctx *kc, const qt_attn_seq *seqs, int n_seq, int NH, int NKV, int HS, int n_ctx,
                          qt_type kv_type, float *scratch);
size_t qt_attention_scratch(int n_batch, int NH, int NKV, int HS, int n_ctx, int n_threads);

// SwiGLU forward and backward (layers-train.c): elements per kernel call (the
// table's element-wise kernels take an int count), and the size below which
// waking the pool costs more than the second thread saves.
#define QT_SWIGLU_CHUNK (1 << 20)
#define QT_SWIGLU_POOL_MIN 16384

// out (N) = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
void qt_swiglu_forward(const qt_kernel_table *kt, float *out, const float *gate, const float *up, int64_t N);
// The same split across the pool's threads (one thread when N is small);
// results are identical for any thread count.
void qt_swiglu_forward_pool(const qt_kctx *kc, float *out, const float *gate, const float *up, int64_t N);

// out (T, C) = rows tokens[t] of the embedding (n_vocab, C), any stored type.
void qt_embedding_forward(const qt_kernel_table *kt, float *out, const int32_t *tokens, int64_t T, const qt_tensor *embd);

// y (N) += x (N)
void qt_residual_forward(float *y, const float *x, int64_t N);

#endif
