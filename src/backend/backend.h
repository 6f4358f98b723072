// backend.h: where a model's arithmetic runs. A backend owns the memory the
// forward and backward passes work in (activations, the KV cache, adapter
// copies, weight copies) and implements the operations the architecture
// files (src/model/arch-*.c) are written in: matmul with a frozen weight,
// RMSNorm, RoPE, attention over packed sequences or a KV cache, SwiGLU,
// cross-entropy, and their backward passes. The architecture code never
// touches activation memory itself (it may live on a GPU): it only passes
// pointers from one operation to the next, ggml-backend style but with
// direct calls instead of a graph.
//
// Implementations: backend-cpu.c (the kernel tables of src/kernels and the
// layer functions of layers.c / layers-train.c / attention.c on a thread
// pool) and, with `make CUDA=1`, backend-cuda.c (on the kernels of
// cuda-*.cu). Adding one = filling a
// qt_backend_ops table; docs/architecture.md lists the steps.
//
// Conventions: every float pointer an op takes is backend memory (from
// ->alloc, a tensor's `dev`, or an offset into either); sizes are int64_t;
// activations are float32 row-major (tokens, features); a weight qt_tensor is
// (ne1 rows, ne0 columns) in its stored type, applied as y = x W^T. Ops that
// are "+=" say so; all others write their outputs. Host-side arrays (sequence
// layout, row lists) are marked "host".
#ifndef QT_BACKEND_H
#define QT_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "quant/types.h"

// RoPE pairing, llama.cpp's numbering: NORM rotates (2i, 2i+1) (GGUF llama
// q/k row order); NEOX rotates (i, i + HS/2) (HF rotate_half order).
typedef enum { QT_ROPE_NORM = 0, QT_ROPE_NEOX = 2 } qt_rope_type;

// A 2-D weight (or a vector: ne1 == 1). data is the host copy (the
// memory-mapped file or a converted buffer) that loaders and exporters read;
// dev is the copy the backend's ops read (== data on the CPU backend). Both
// NULL when an optional tensor is absent.
typedef struct {
    qt_type type;
    int64_t ne0, ne1;   // ne0 elements per row (input dim), ne1 rows (output dim)
    const void *data;
    const void *dev;
} qt_tensor;

// The sequences of one batch, laid end to end (N = start[n_seq] tokens).
// Attention stays inside a sequence. All host memory.
typedef struct {
    int n_seq;
    const int *start;   // (n_seq + 1): sequence s is tokens [start[s], start[s+1])
    const int *pos0;    // (n_seq): position of each sequence's first token; NULL: all 0
    const int *slot;    // (n_seq): KV cache slot of each sequence; NULL: slot s (inference only)
} qt_seqs;

typedef struct qt_backend qt_backend;
typedef struct qt_kv qt_kv;   // a backend's KV cache (layout is the backend's)

// One product of a multi-matmul: y (N, W->ne1) = x (N, W->ne0) W^T.
typedef struct {
    float *y;
    const qt_tensor *w;
} qt_mm_out;
#define QT_MM_MAX_OUTS 4

typedef struct {
    // ---- memory ----
    // n bytes of backend memory, zero-filled, 64-byte aligned; NULL (logged
    // with `what` and the size) on failure.
    void *(*alloc)(qt_backend *be, size_t n, const char *what);
    void (*free)(qt_backend *be, void *p, size_t n);   // NULL is a no-op
    void (*upload)(qt_backend *be, void *dst, const void *src_host, size_t n);
    void (*download)(qt_backend *be, void *dst_host, const void *src, size_t n);
    void (*copy)(qt_backend *be, void *dst, const void *src, size_t n);
    void (*zero)(qt_backend *be, void *p, size_t n);
    // Make t usable by the ops: set t->dev (upload t->data on a device
    // backend). QT_ERR (logged) when it does not fit or the type is not
    // supported there.
    int (*tensor_bind)(qt_backend *be, qt_tensor *t);
    void (*tensor_unbind)(qt_backend *be, qt_tensor *t);
    // Stop flag (NULL: none) polled inside long operations; once set, ops
    // return early with undefined outputs (callers check the flag).
    void (*set_stop)(qt_backend *be, const atomic_int *stop);

    // ---- forward ----
    // out (N, ne0) = rows tokens[t] (host, (N)) of W.
    void (*embed)(qt_backend *be, float *out, const int32_t *tokens, int64_t N, const qt_tensor *w);
    // out (N, C) = x / sqrt(mean(x^2) + eps) * w (w F32 (C)); rstd (N) saved unless NULL.
    void (*rmsnorm)(qt_backend *be, float *out, float *rstd, const float *x, const qt_tensor *w, int64_t N,
                    int64_t C, float eps);
    // outs[i].y = x (N, n_in) @ W_i^T for i < n (one pass over x where it pays).
    void (*matmul)(qt_backend *be, const float *x, int64_t n_in, int64_t N, const qt_mm_out *outs, int n);
    // y (N, n) += b (n) broadcast over rows (b F32).
    void (*add_bias)(qt_backend *be, float *y, const qt_tensor *b, int64_t N, int64_t n);
    // y (n) += a * x (n)
    void (*axpy)(qt_backend *be, int64_t n, float a, const float *x, float *y);
    // y (n) *= a
    void (*scale)(qt_backend *be, int64_t n, float a, float *y);
    // cs (N, HS) = cos, sin pairs of pos[t] * theta^(-2i/HS) / freqs[i];
    // pos host (N); freqs F32 (HS/2) or NULL.
    void (*rope_table)(qt_backend *be, float *cs, const int *pos, int64_t N, int HS, float theta,
                       const qt_tensor *freqs);
    // In place on x (N, nh, HS); inverse: the transposed rotation (backward).
    void (*rope)(qt_backend *be, float *x, const float *cs, int64_t N, int nh, int HS, qt_rope_type type,
                 bool inverse);
    // Causal grouped-query attention, scale 1/sqrt(HS), query head h reads kv
    // head h / (NH/NKV). q (N, NH*HS), k, v (N, NKV*HS) after RoPE.
    // kv != NULL (inference): each sequence's k, v are stored in its cache
    //   slot at positions pos0.. of layer il, and its queries attend to the
    //   cache's positions 0 .. pos0 + t.
    // kv == NULL (training): queries attend within their own sequence, pos0
    //   must be 0; lse (N, NH) keeps each row's log-sum-exp for the backward
    //   (NULL: not kept). Memory is O(N * HS) per head: scores are never
    //   materialised (flash attention).
    void (*attention)(qt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                      const qt_seqs *s, qt_kv *kv, int il, int NH, int NKV, int HS);
    // out (n) = silu(gate) * up
    void (*swiglu)(qt_backend *be, float *out, const float *gate, const float *up, int64_t n);
    // dst (n_rows, C) = rows rows[i] (host) of src (., C)
    void (*get_rows)(qt_backend *be, float *dst, const float *src, const int *rows, int n_rows, int64_t C);
    // Optional ops of the GPT-2 / Gemma / Phi-3 blocks (NULL on a backend
    // without them: qt_model_bind refuses architectures that need them).
    // out (N, C) = (x - mean) / sqrt(var + eps) * w + b (w, b F32 (C); b may
    // be absent: data == NULL); rstd (N) saved unless NULL.
    void (*layernorm)(qt_backend *be, float *out, float *rstd, const float *x, const qt_tensor *w,
                      const qt_tensor *b, int64_t N, int64_t C, float eps);
    // out (n) = gelu(x), tanh approximation (gelu_new, gelu_pytorch_tanh); out may alias x
    void (*gelu)(qt_backend *be, float *out, const float *x, int64_t n);
    // out (n) = gelu(gate) * up (GeGLU, tanh approximation)
    void (*geglu)(qt_backend *be, float *out, const float *gate, const float *up, int64_t n);
    // dst[r * ld_dst + c] = src[r * ld_src + c] for r < rows, c < cols: a
    // column block of a fused projection's output (q, k, v of c_attn) or
    // back (their gradients)
    void (*copy_2d)(qt_backend *be, float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t rows,
                    int64_t cols);

    // ---- backward (training) ----
    // dx (N, n_in) += dy (N, W->ne1) @ W
    void (*matmul_t)(qt_backend *be, float *dx, const float *dy, const qt_tensor *w, int64_t N);
    // dw (n_out, n_in) += dy^T (n_out, N) @ x (N, n_in), float32 (adapter gradients)
    void (*matmul_dw)(qt_backend *be, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out,
                      int64_t N);
    // dx (N, C) += backward of rmsnorm given dout, x, w, saved rstd
    void (*rmsnorm_backward)(qt_backend *be, float *dx, const float *dout, const float *x, const qt_tensor *w,
                             const float *rstd, int64_t N, int64_t C);
    // dq, dk, dv += (any may be NULL); out, lse as saved by attention (kv == NULL)
    void (*attention_backward)(qt_backend *be, float *dq, float *dk, float *dv, const float *dout,
                               const float *out, const float *lse, const float *q, const float *k, const float *v,
                               const qt_seqs *s, int NH, int NKV, int HS);
    // dgate, dup (n) += backward of swiglu (either may be NULL)
    void (*swiglu_backward)(qt_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t n);
    // Optional (see layernorm): dx (N, C) += backward of layernorm given
    // dout, x, w and the saved rstd (the mean is recomputed from x)
    void (*layernorm_backward)(qt_backend *be, float *dx, const float *dout, const float *x, const qt_tensor *w,
                               const float *rstd, int64_t N, int64_t C);
    // dx (n) += dout * gelu'(x)
    void (*gelu_backward)(qt_backend *be, float *dx, const float *dout, const float *x, int64_t n);
    // dgate, dup (n) += backward of geglu (either may be NULL)
    void (*geglu_backward)(qt_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t n);
    // losses (N) = logsumexp(row) - row[target] (0 where target < 0);
    // dlogits (N, V) = (softmax - onehot) * dscale (written; may alias logits;
    // NULL: no gradient). targets host (N).
    void (*cross_entropy)(qt_backend *be, float *losses, float *dlogits, const float *logits,
                          const int32_t *targets, float dscale, int64_t N, int64_t V);
    // dst (n) = src * keep / (1 - p), keep[i] = hash(key, i) >= p (the same
    // mask for the same key on every backend; dst may alias src)
    void (*dropout)(qt_backend *be, float *dst, const float *src, int64_t n, float p, uint64_t key);

    // ---- KV cache ----
    // n_slots independent sequences of up to n_ctx positions per layer.
    // wtype: the type of the model's projection weights; where its prompts'
    // products round to bfloat16 on the CPU's bf16 instructions, the
    // attention over this cache may too (products summed in fp32). The CPU
    // also picks the cache's element type by it (qt_backend_cpu_kv_type:
    // fp16 where the products round activations); the GPU's stays fp32.
    qt_kv *(*kv_init)(qt_backend *be, int n_layer, int n_slots, int n_ctx, int NKV, int HS, qt_type wtype);
    void (*kv_free)(qt_backend *be, qt_kv *kv);

    // ---- device memory (NULL on backends whose memory is host memory) ----
    // The device's free and total bytes, and the most this backend has held
    // at once (allocations, bound tensors, KV caches, its own scratch).
    void (*mem_info)(qt_backend *be, size_t *free_bytes, size_t *total_bytes, size_t *peak_bytes);
    // Scratch the ops allocate by themselves for products of up to n_tokens
    // rows with weights of up to max_in x max_out elements, and attention
    // over n_tokens rows of n_head heads (memory plans).
    size_t (*scratch_bytes)(qt_backend *be, int64_t n_tokens, int64_t max_in, int64_t max_out, int n_head);

    void (*sync)(qt_backend *be);           // wait for queued work (no-op on the CPU)
    void (*destroy)(qt_backend *be);

    // ---- sparse mixture of experts (layers-moe.c on the CPU) ----
    // Optional: NULL where a backend has none; a MoE model then stops with
    // "not supported on this device" (qt_moe_missing_op, model/moe.h).
    // Tokens are grouped by expert so that each expert's FFN is one matmul
    // over its tokens: pos (N, K) int32 (backend memory) gives the row of the
    // grouped (N*K, .) buffers that holds (token t, its j-th expert); the host
    // computes it from ids (model/moe.c).
    //
    // Router, as Mixtral's: p = softmax(logits (N, E)) in float; per token the
    // K largest p (ties: the lower expert) -> ids (N, K) int32, largest first;
    // w (N, K) = those p, divided by their sum when norm (Mixtral; Qwen-MoE's
    // norm_topk_prob = false keeps them).
    void (*moe_route)(qt_backend *be, float *w, int32_t *ids, const float *logits, int64_t N, int E, int K,
                      bool norm);
    // dlogits (N, E) (written) = backward of moe_route given dw (N, K); w, ids
    // as it wrote them (the selection is piecewise constant).
    void (*moe_route_backward)(qt_backend *be, float *dlogits, const float *dw, const float *w, const int32_t *ids,
                               const float *logits, int64_t N, int E, int K, bool norm);
    // xg[pos[t*K + j]] (C) = x[t] (C) for all t < N, j < K
    void (*moe_gather)(qt_backend *be, float *xg, const float *x, const int32_t *pos, int64_t N, int K, int64_t C);
    // dx[t] (C) += sum over j of dxg[pos[t*K + j]]
    void (*moe_gather_backward)(qt_backend *be, float *dx, const float *dxg, const int32_t *pos, int64_t N, int K,
                                int64_t C);
    // out[t] (C) += sum over j (ascending) of w[t*K + j] * y[pos[t*K + j]]: the
    // experts' outputs y (N*K, C, grouped) weighted and scattered back
    void (*moe_combine)(qt_backend *be, float *out, const float *y, const int32_t *pos, const float *w, int64_t N,
                        int K, int64_t C);
    // dy[pos[t*K + j]] = w[t*K + j] * dout[t], dw[t*K + j] = dot(dout[t], y[pos[t*K + j]]) (both written)
    void (*moe_combine_backward)(qt_backend *be, float *dy, float *dw, const float *dout, const float *y,
                                 const int32_t *pos, const float *w, int64_t N, int K, int64_t C);
} qt_backend_ops;

struct qt_backend {
    const qt_backend_ops *ops;
    const char *name;     // "cpu", "cuda"
    bool host_memory;     // backend memory is host memory (pointers are shared, no copies)
    int n_threads;        // CPU threads it computes on (for memory plans)
    void *impl;
};

// Backends by name: "cpu" (on pool, borrowed, may be NULL: one thread),
// "cuda" (when built with CUDA=1 and a GPU is present), "auto" (cuda if
// present, else cpu). NULL (logged) if unavailable. backend-cpu.h has the
// CPU backend's own constructor and its kernel context.
qt_backend *qt_backend_init(const char *name, qt_pool *pool);
void qt_backend_free(qt_backend *be);   // NULL is a no-op
bool qt_backend_cuda_built(void);
// Prints the GPUs (name, memory) or why there are none; QT_ERR if none.
int qt_backend_cuda_list(void);

#endif
