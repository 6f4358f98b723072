// cuda-ops.h: the plain-C interface of the CUDA kernels and their launchers
// (cuda-ops.cu, cuda-quant.cu, cuda-attention.cu, compiled by nvcc as C++)
// for the C glue backend-cuda.c, which implements qt_backend_ops on top of
// them. The split exists because backend.h includes <stdatomic.h>, which
// nvcc's C++ cannot parse, and so that gcc's strict warning set never sees
// CUDA's headers. Built only with `make CUDA=1`.
//
// Conventions: one qt_cuda context per backend holds the device, its stream,
// the cuBLAS handle and the scratch buffers (no globals). Every function
// queues its work on the context's stream; pointers are device memory unless
// named *_host (host arrays are copied before the function returns, so the
// caller may reuse them at once). Functions returning int give 0, or -1
// after writing what failed to qt_cuda_error() (a CUDA or cuBLAS error, or
// out of device memory). Shapes and semantics are those of the matching
// qt_backend_ops entry (backend.h); qt_type values are passed as int.
//
// Device layout of weights: as stored (GGML's block structs, rows of
// qt_row_size bytes), except Q4_0 and Q8_0, which are split per tensor
// into all blocks' quants (16 or 32 bytes per block, block b of row r at
// r * blocks_per_row + b) followed by all blocks' fp16 scales, so the
// kernels read quants with aligned 16-byte loads. Same bytes in total.
#ifndef QT_CUDA_OPS_H
#define QT_CUDA_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qt_cuda qt_cuda;

// ---- devices ----

// Number of usable GPUs; 0 with the reason in why (no device, no driver,
// driver older than the runtime) when there are none. Quiet otherwise.
int qt_cuda_probe(char *why, size_t why_n);
typedef struct {
    char name[256];
    size_t total, free;      // bytes
    int cc_major, cc_minor, n_sm;
} qt_cuda_dev_info;
int qt_cuda_dev_info_get(int dev, qt_cuda_dev_info *info);
// CUDA versions as 1000 * major + 10 * minor: this build's runtime, and the
// newest the installed driver supports (0: no driver).
void qt_cuda_versions(int *runtime, int *driver);

// ---- context ----

// fp32: every product in float32 (dequantized weights, cublasSgemm), for
// parity with the CPU; else bf16 operands with float32 accumulation (TF32
// for float32 weights such as LoRA adapters). NULL with the reason in why.
qt_cuda *qt_cuda_create(int dev, bool fp32, char *why, size_t why_n);
void qt_cuda_destroy(qt_cuda *c);   // NULL is a no-op
const char *qt_cuda_error(const qt_cuda *c);
bool qt_cuda_is_fp32(const qt_cuda *c);
const char *qt_cuda_device_name(const qt_cuda *c);

// ---- memory ----

// n bytes, zero-filled, 256-byte aligned; NULL (error set, with the free
// and total memory) when the device is out of memory.
void *qt_cuda_alloc(qt_cuda *c, size_t n);
void qt_cuda_free(qt_cuda *c, void *p, size_t n);   // NULL is a no-op
int qt_cuda_upload(qt_cuda *c, void *dst, const void *src_host, size_t n);
int qt_cuda_download(qt_cuda *c, void *dst_host, const void *src, size_t n);   // waits for the data
int qt_cuda_copy(qt_cuda *c, void *dst, const void *src, size_t n);
int qt_cuda_zero(qt_cuda *c, void *p, size_t n);
int qt_cuda_sync(qt_cuda *c);
// Device free / total bytes; bytes this context holds now and at most so far
// (qt_cuda_alloc, weights, scratch). Any pointer may be NULL.
void qt_cuda_mem(qt_cuda *c, size_t *free_b, size_t *total_b, size_t *used_b, size_t *peak_b);
// Scratch the ops below allocate by themselves for products of up to
// n_tokens rows with weights of up to max_in x max_out elements (the output
// head included) and attention over n_tokens rows of n_head heads.
size_t qt_cuda_scratch_plan(const qt_cuda *c, int64_t n_tokens, int64_t max_in, int64_t max_out, int n_head);

// ---- weights ----

// Whether the kernels read this qt_type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K).
bool qt_cuda_type_supported(int type);
// Copies a (n_out rows, n_in columns) weight into dst (qt_row_size * n_out
// bytes from qt_cuda_alloc) in the device layout above.
int qt_cuda_weight_upload(qt_cuda *c, void *dst, const void *src_host, int type, int64_t n_in, int64_t n_out);
// dst (n_rows, n_in) float32 = rows [0, n_rows) of a weight in the device layout (tests).
int qt_cuda_dequantize(qt_cuda *c, float *dst, const void *w, int type, int64_t n_in, int64_t n_rows);

// ---- products ----

// One output of qt_cuda_matmul: y (N, n_out) = x (N, n_in) @ W^T.
typedef struct {
    float *y;
    const void *w;    // device layout
    int type;
    int64_t n_out;
} qt_cuda_mm;
#define QT_CUDA_MM_MAX 4
// N <= QT_CUDA_GEMV_MAX_N (decode): matrix-vector kernels reading the stored
// blocks, float32 arithmetic, outputs of one type in one launch. Larger N:
// the weight dequantized into a scratch buffer, then cuBLAS (bf16 operands,
// float32 accumulation; float32 weights in TF32; everything in float32 in
// fp32 mode).
#define QT_CUDA_GEMV_MAX_N 8
int qt_cuda_matmul(qt_cuda *c, const float *x, int64_t n_in, int64_t N, const qt_cuda_mm *outs, int n);
// dx (N, n_in) += dy (N, n_out) @ W
int qt_cuda_matmul_t(qt_cuda *c, float *dx, const float *dy, const void *w, int type, int64_t n_in, int64_t n_out,
                     int64_t N);
// dw (n_out, n_in) += dy^T (n_out, N) @ x (N, n_in), float32 (TF32 unless fp32)
int qt_cuda_matmul_dw(qt_cuda *c, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out, int64_t N);

// ---- layers ----

// out (N, n_in) = rows tokens_host[t] of W (n_rows, n_in)
int qt_cuda_embed(qt_cuda *c, float *out, const int32_t *tokens_host, int64_t N, const void *w, int type, int64_t n_in,
                  int64_t n_rows);
int qt_cuda_rmsnorm(qt_cuda *c, float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                    float eps);
int qt_cuda_rmsnorm_backward(qt_cuda *c, float *dx, const float *dout, const float *x, const float *w,
                             const float *rstd, int64_t N, int64_t C);
int qt_cuda_add_bias(qt_cuda *c, float *y, const float *b, int64_t N, int64_t n);
int qt_cuda_axpy(qt_cuda *c, int64_t n, float a, const float *x, float *y);
int qt_cuda_scale(qt_cuda *c, int64_t n, float a, float *y);
int qt_cuda_rope_table(qt_cuda *c, float *cs, const int *pos_host, int64_t N, int HS, float theta,
                       const float *freqs);
int qt_cuda_rope(qt_cuda *c, float *x, const float *cs, int64_t N, int nh, int HS, bool neox, bool inverse);
int qt_cuda_swiglu(qt_cuda *c, float *out, const float *gate, const float *up, int64_t n);
int qt_cuda_swiglu_backward(qt_cuda *c, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t n);
int qt_cuda_get_rows(qt_cuda *c, float *dst, const float *src, const int *rows_host, int n_rows, int64_t C);
int qt_cuda_cross_entropy(qt_cuda *c, float *losses, float *dlogits, const float *logits,
                          const int32_t *targets_host, float dscale, int64_t N, int64_t V);
// dst (n) = hash(key + i * golden) < thresh ? 0 : src * inv (layers-train.h's
// qt_dropout_forward; thresh and inv computed by the caller as it does)
int qt_cuda_dropout(qt_cuda *c, float *dst, const float *src, int64_t n, uint64_t thresh, float inv, uint64_t key);

// ---- attention ----

// One sequence of a batch: tokens [start, start + T) at positions pos0..;
// slot: its KV cache slot (inference).
typedef struct {
    int start, T, pos0, slot;
} qt_cuda_seq;
// Largest head size the attention kernels take.
#define QT_CUDA_MAX_HEAD 128
// Causal grouped-query attention (backend.h). kcache, vcache: one layer of
// the cache, (n_slots, NKV, n_ctx, HS) each, or NULL (training: keys are k,
// v of the sequence itself, pos0 == 0). With a cache, each sequence's new
// k, v rows are stored at positions pos0.. of its slot. lse (N, NH) may be NULL.
int qt_cuda_attention(qt_cuda *c, float *out, float *lse, const float *q, const float *k, const float *v,
                      const qt_cuda_seq *seqs_host, int n_seq, float *kcache, float *vcache, int n_ctx, int NH,
                      int NKV, int HS);
// dq, dk, dv += (any may be NULL), from out and lse saved by the training forward.
int qt_cuda_attention_backward(qt_cuda *c, float *dq, float *dk, float *dv, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const qt_cuda_seq *seqs_host, int n_seq, int NH, int NKV, int HS);

// ---- measuring ----

// Device-to-device copy bandwidth over two buffers of `bytes`, counting bytes
// read plus written, median of reps timed copies after a warm-up (GB/s).
int qt_cuda_copy_bandwidth(qt_cuda *c, size_t bytes, int reps, double *gbps);

#ifdef __cplusplus
}
#endif

#endif
