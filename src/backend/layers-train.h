// layers-train.h: backward passes of the Llama block's layers for LoRA
// training, llm.c style: outputs (gradients) first, then saved tensors,
// inputs, parameters, dimensions. Shapes: T tokens of ONE sequence, C n_embd,
// NH query heads, NKV key/value heads (query head h reads kv head h / (NH/NKV)),
// HS head size, F n_ff, V vocabulary.
//
// Contract: every backward ACCUMULATES (+=) into its gradient outputs (callers
// zero them), except qt_cross_entropy's dlogits, which is written. A NULL
// parameter-gradient pointer means a frozen parameter: that work is skipped.
#ifndef QT_LAYERS_TRAIN_H
#define QT_LAYERS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "backend/layers.h"

// Backward of y = x * rstd * w (qt_rmsnorm_forward, which saved rstd (T)).
// dx (T, C) += ... (the table's rmsnorm_backward_f32 per row), dw (C) += ...
// (dw may be NULL); dout, x (T, C); w (C).
void qt_rmsnorm_backward(const qt_kernel_table *K, float *dx, float *dw, const float *dout, const float *x,
                         const float *w, const float *rstd, int T, int C);

// Backward of qt_rope_forward: the inverse (transposed) rotation applied in
// place to the gradient dx (T, NHX, HS), with the same cs table and type.
void qt_rope_backward(float *dx, const float *cs, int T, int NHX, int HS, qt_rope_type type);

// Causal self-attention within one sequence (no KV cache), scale 1/sqrt(HS),
// streaming (attention-train.c): q (T, NH*HS), k, v (T, NKV*HS) ->
// out (T, NH*HS) (written); lse (T, NH) keeps each row's log-sum-exp (NULL:
// not kept). No (T, T) matrix exists: memory O(T * HS) per head.
// scratch: qt_attention_train_scratch() floats (serves both directions).
void qt_attention_train_forward(const qt_kctx *kc, float *out, float *lse, const float *q, const float *k,
                                const float *v, int T, int NH, int NKV, int HS, float *scratch);
// dq (T, NH*HS), dk, dv (T, NKV*HS) += ... (any may be NULL: skipped);
// dout (T, NH*HS); out and lse as the forward wrote them. Results do not
// depend on the pool's thread count.
void qt_attention_train_backward(const qt_kctx *kc, float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q, const float *k, const float *v,
                                 int T, int NH, int NKV, int HS, float *scratch);
size_t qt_attention_train_scratch(int T, int NH, int NKV, int HS);

// Backward of out = silu(gate) * up (qt_swiglu_forward):
// dgate (N) += dout * up * silu'(gate), dup (N) += dout * silu(gate); either may be NULL.
void qt_swiglu_backward(const qt_kernel_table *kt, float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t N);
// The same split across the pool's threads (one thread when N is small);
// results are identical for any thread count.
void qt_swiglu_backward_pool(const qt_kctx *kc, float *dgate, float *dup, const float *dout, const float *gate,
                             const float *up, int64_t N);

// Cross-entropy over V classes for T rows of logits (T, V):
// losses (T) = logsumexp(row) - row[target]; rows whose target < 0 are ignored
// (loss 0, gradient 0). If dlogits != NULL, writes (not +=)
// dlogits (T, V) = (softmax - onehot) * dscale[t] (dscale (T) per-row weights,
// e.g. 1/n_targets; NULL means 1); dlogits may alias logits.
// Max-subtracted, with the log-sum-exp accumulated in double.
void qt_cross_entropy(const qt_kernel_table *kt, float *losses, float *dlogits, const float *logits, const int32_t *targets, const float *dscale,
                      int T, int V);
// The same with the rows spread over the pool's threads (each row whole on one
// thread: results are identical for any thread count).
void qt_cross_entropy_pool(const qt_kctx *kc, float *losses, float *dlogits, const float *logits, const int32_t *targets,
                           const float *dscale, int T, int V);

// Weight gradient of y = x @ W^T for LoRA adapters, all f32 row-major:
// dw (n_out, n_in) += dy^T (n_out, T) @ x (T, n_in); split across the pool's
// threads without write conflicts. When one side is narrow (the rank) it runs
// on qt_gemm_acc with that operand transposed.
void qt_matmul_dw(const qt_kctx *kc, float *dw, const float *dy, const float *x, int n_in, int n_out, int T);

// Dropout with p in [0, 1): dst (n) = src * keep / (1 - p), element i kept
// iff mix64(key + i * 0x9e3779b97f4a7c15) >= p * 2^64 (splitmix64's
// finaliser): a function of (key, i) only, so the backward regenerates the
// mask and every backend draws the same one. dst may alias src.
void qt_dropout_forward(float *dst, const float *src, int64_t n, float p, uint64_t key);
// splitmix64's finaliser (the hash above), for deriving keys.
uint64_t qt_dropout_mix(uint64_t z);

#endif
