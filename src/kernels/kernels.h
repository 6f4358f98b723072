// kernels.h: the only door to SIMD code. Each ISA file (kernels-ref.c,
// kernels-avx2.c, kernels-avx512.c, kernels-neon.c) fills a qt_kernel_table;
// cpu.c detects the CPU once and picks the best table. Everything above this
// layer calls through qt_kernels() or the drivers below and never sees an
// intrinsic.
//
// Conventions (GGML's): a weight matrix W has n_out rows of n_in elements,
// each row stored contiguously in W's type, row stride qt_row_size(type, n_in).
// Activations are float32, row-major (T, n_in).
#ifndef QT_KERNELS_H
#define QT_KERNELS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "quant/types.h"

// s = dot(x, y) over n elements; x is a row in the weight type, y a row in
// that type's vec_dot_type (e.g. Q4_0 pairs with Q8_0, Q4_K with Q8_K).
typedef void (*qt_vec_dot_fn)(int n, float *s, const void *x, const void *y);

// Tile kernel for matmul: for r < n_rows, c < n_cols:
//   y[c*y_stride + r] = dot(w + r*w_stride, x + c*x_stride) over n elements,
// w in the weight type, x in vec_dot_type. NULL: matmul uses vec_dot.
typedef void (*qt_gemm_fn)(int n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                           float *y, size_t y_stride, int n_rows, int n_cols);

// Multi-row kernel for T == 1 (decode): for r < n_rows,
//   y[r] = dot(w + r*w_stride, x) over n elements,
// w in the weight type, x one row in vec_dot_type. Any n_rows >= 1; loads
// nothing outside the n_rows rows (it may prefetch past them). NULL: decode
// uses vec_dot per row.
typedef void (*qt_gemv_fn)(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// Packed-gemm kernel for T > 1 on float activations (float weight types): for
// r < n_rows, t < T:
//   y[t*ldy + r] = dot(W row r, x row t) over n elements,
// W rows w_stride bytes apart in the weight type, x float32 (T, n) with rows
// ldx floats apart. W is converted to float a cache block at a time straight
// into the gemm's packed layout and reused by every token, so the weight
// conversion is paid once per call instead of once per tile. NULL: matmul
// uses the gemm tiles.
// xp: x already packed for all T rows by the table's gemm_pack_x (so threads
// working on different rows share one packing), or NULL: packed here.
typedef void (*qt_gemm_wt_fn)(int T, int n, const float *x, size_t ldx, const float *xp, const void *w,
                              size_t w_stride, float *y, size_t ldy, int n_rows);
// qt_matmul takes the gemm_wt path from this many tokens on (below it the
// weight conversion would not pay for itself). On that path x is not rounded
// to the vec_dot_type, so results are closer to the exact product than ref's.
#define QT_MATMUL_WT_MIN_T 16

typedef struct {
    qt_type vec_dot_type;        // the type activations are converted to
    qt_from_float_fn from_float; // float -> vec_dot_type rows (fast)
    qt_to_float_fn to_float;     // this type -> float rows (fast dequantization)
    qt_vec_dot_fn vec_dot;       // NULL: no matmul support for this weight type
    qt_gemm_fn gemm;             // optional tiled kernel for T > 1
    qt_gemv_fn gemv;             // optional multi-row kernel for T == 1
    qt_gemm_wt_fn gemm_wt;       // optional packed f32 gemm for T > 1 (float weights)
} qt_kernel_traits;

typedef struct {
    const char *isa;                          // "ref", "avx2", "avx512", "neon"
    qt_kernel_traits type[QT_TYPE_COUNT];
    // float vector helpers for the layers (attention, norms, optimizers)
    float (*dot_f32)(int n, const float *x, const float *y);
    void (*axpy_f32)(int n, float a, const float *x, float *y);   // y += a*x
    void (*scale_f32)(int n, float a, float *y);                  // y *= a
    // C (M, N) += A (M, K) @ B (K, N), float32 row-major with leading
    // dimensions lda, ldb, ldc: qt_matmul_t's inner kernel (dx += dy @ W tile).
    void (*gemm_acc_f32)(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
    // Optional: the same with B = W (K, N) given as weight rows w_stride bytes
    // apart in a blocked type (blck elements in blck_bytes), dequantized by
    // to_float into the gemm's packed panels; N a multiple of blck. NULL:
    // qt_matmul_t dequantizes tiles into a buffer for gemm_acc_f32.
    void (*gemm_acc_wq)(int M, int N, int K, const float *A, int lda, const void *w, size_t w_stride,
                        qt_to_float_fn to_float, int blck, size_t blck_bytes, float *C, int ldc);
    // Optional, with gemm_wt: x (T, n) packed once for gemm_wt's xp, in
    // gemm_pack_x_size(T, n) floats; thread ith of nth packs its share.
    size_t (*gemm_pack_x_size)(int T, int n);
    void (*gemm_pack_x)(int T, int n, const float *x, size_t ldx, float *xp, int ith, int nth);
    // Element-wise math for softmax, cross-entropy and SwiGLU (vecmath-*.c).
    // exp: ref is libm expf; the SIMD tables use one polynomial whose relative
    // error is <= QT_EXP_MAX_REL_ERR for results >= FLT_MIN (subnormal results
    // within one subnormal step); x < -104 (and -inf) gives 0, x >= 88.7229
    // (exp above FLT_MAX) +inf, NaN stays NaN. Every element, including a
    // ragged tail, goes through the same code, so a result never depends on
    // where an array is split.
    void (*exp_f32)(int n, const float *x, float *y);             // y = exp(x); y may alias x
    float (*max_f32)(int n, const float *x);                       // max x[i]; -INFINITY for n == 0
    // y = exp(x * scale - shift), returns sum(y) accumulated in double;
    // y may alias x or be NULL (sum only). Softmax: shift = scale * max(x).
    double (*exp_sum_f32)(int n, const float *x, float scale, float shift, float *y);
    // out = silu(gate) * up, silu(g) = g / (1 + exp(-g)); out may alias gate or up.
    void (*swiglu_f32)(int n, const float *gate, const float *up, float *out);
    // dgate += dout * up * silu'(gate), dup += dout * silu(gate); either may be NULL.
    void (*swiglu_backward_f32)(int n, const float *dout, const float *gate, const float *up, float *dgate, float *dup);
} qt_kernel_table;

// Bound on the SIMD exp_f32's relative error against exact exp for results
// >= FLT_MIN: measured worst 8.5e-8 (1.01 ulp) over every float, AVX2;
// tests/test-kernels.c checks a sweep on every table.
#define QT_EXP_MAX_REL_ERR 1.5e-7

// Per-ISA tables. Each returns NULL when not compiled in for this build
// (e.g. avx2 on arm64); availability on this CPU is a separate question.
const qt_kernel_table *qt_kernels_ref(void);
const qt_kernel_table *qt_kernels_avx2(void);
const qt_kernel_table *qt_kernels_avx512(void);
const qt_kernel_table *qt_kernels_neon(void);

// CPU feature detection (cpu.c).
typedef struct {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16, neon, dotprod;
} qt_cpu_features;
const qt_cpu_features *qt_cpu(void);
// Whether this CPU can run the table (false for NULL): every ISA extension
// its file is compiled with must be present.
bool qt_kernels_runnable(const qt_kernel_table *table);

// The best table this CPU runs, unless the environment variable
// QT_ISA=ref|avx2|avx512|neon asks for another (tests and benchmarks). Read
// once when a backend (or a test) builds its qt_kctx; nothing below this
// header consults it: every driver takes its table explicitly.
// Thread-safe after the first call.
const qt_kernel_table *qt_kernels(void);
// Pick the table qt_kernels() returns (tests): NULL restores the automatic choice.
void qt_kernels_set(const qt_kernel_table *table);

// How products treat their operands.
//   FAST: activations may be rounded to the weight type's vec_dot_type (Q8_0,
//         Q8_K, F16: llama.cpp's inference numerics).
//   F32:  x stays float32 and W is dequantized to float32 (the training
//         path: QLoRA's dequantized-weight math).
//   BF16: x and W rounded to bfloat16, products accumulated in float32
//         (PyTorch autocast); where a table has no bf16 kernel, as F32.
typedef enum { QT_PREC_FAST = 0, QT_PREC_F32 = 1, QT_PREC_BF16 = 2 } qt_prec;

// Everything a kernel driver needs, passed explicitly (no process globals in
// the compute path): the table, the thread pool (NULL: the caller's thread
// only) and the precision. stop: NULL, or a flag the drivers poll between
// work items; once it is set they return early and their outputs are
// undefined (the caller checks the flag and discards the step).
typedef struct {
    const qt_kernel_table *kt;
    qt_pool *pool;
    qt_prec prec;
    const atomic_int *stop;
} qt_kctx;
// {qt_kernels(), pool, QT_PREC_FAST, NULL}
qt_kctx qt_kctx_default(qt_pool *pool);
static inline bool qt_kctx_stopped(const qt_kctx *kc) {
    return kc->stop && atomic_load_explicit(kc->stop, memory_order_relaxed);
}

// y (T, n_out) = x (T, n_in) @ W^T, where W is (n_out, n_in) in wtype.
// x is converted once to the vec_dot_type (in a work buffer) and the output
// is split across the pool's threads; uses gemm tiles when T > 1.
// n_in must be a multiple of wtype's block size.
void qt_matmul(const qt_kctx *kc, float *y, const float *x, const void *w, qt_type wtype, int64_t n_in,
               int64_t n_out, int64_t T);

// Several matmuls on one input, e.g. q, k, v or gate, up:
//   outs[i].y (T, outs[i].n_out) = x (T, n_in) @ W_i^T, i < n_outs.
// x is converted once and all outputs share one pool run (decode runs ~8
// small jobs per layer; each one costs a wake-up and a barrier). Outputs whose
// types convert x differently run as separate matmuls.
#define QT_MATMUL_MAX_OUTS 4
typedef struct {
    float *y;
    const void *w;
    qt_type wtype;
    int64_t n_out;
} qt_matmul_out;
void qt_matmul_multi(const qt_kctx *kc, const float *x, int64_t n_in, int64_t T, const qt_matmul_out *outs,
                     int n_outs);

// qt_matmul with weight rows w_stride bytes apart (a view into a larger
// matrix, e.g. one head of a transposed V cache).
void qt_matmul_strided(const qt_kctx *kc, float *y, const float *x, const void *w, qt_type wtype, int64_t n_in,
                       int64_t n_out, int64_t T, size_t w_stride);

// Backward of qt_matmul w.r.t. x, for the training engine:
// dx (T, n_in) += dy (T, n_out) @ W. W is read row by row in its stored type
// (dequantized a tile at a time), never materialised in full precision.
void qt_matmul_t(const qt_kctx *kc, float *dx, const float *dy, const void *w, qt_type wtype, int64_t n_in,
                 int64_t n_out, int64_t T);

// C (M, N) += A (M, K) @ B (K, N), float32 row-major with leading dimensions
// lda, ldb, ldc, on the calling thread (layers call it from inside their
// pool workers), in kc's precision.
void qt_gemm_acc(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc);

// Dequantize row `row` of W (n_in elements) into dst.
void qt_get_row(const qt_kernel_table *kt, float *dst, const void *w, qt_type wtype, int64_t n_in, int64_t row);

#endif
