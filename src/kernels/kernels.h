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

// Element counts: rows are at most INT32_MAX elements, so the per-row kernels
// (vec_dot, gemv, gemm tiles) take `int n`; everything that counts elements
// of a matrix, a leading dimension or an offset is int64_t / size_t.

// s = dot(x, y) over n elements; x is a row in the weight type, y a row in
// that type's vec_dot_type (e.g. Q4_0 pairs with Q8_0, Q4_K with Q8_K).
typedef void (*qt_vec_dot_fn)(int n, float *s, const void *x, const void *y);

// Tile kernel for matmul: for r < n_rows, c < n_cols:
//   y[c*y_stride + r] = dot(w + r*w_stride, x + c*x_stride) over n elements,
// w in the weight type, x in vec_dot_type.
typedef void (*qt_gemm_fn)(int n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                           float *y, size_t y_stride, int n_rows, int n_cols);

// Multi-row kernel for T == 1 (decode): for r < n_rows,
//   y[r] = dot(w + r*w_stride, x) over n elements,
// w in the weight type, x one row in vec_dot_type. Any n_rows >= 1; loads
// nothing outside the n_rows rows (it may prefetch past them).
typedef void (*qt_gemv_fn)(int n, const void *w, size_t w_stride, const void *x, float *y, int n_rows);

// One kernel per (weight type, shape class) for the quantized-activation
// (QT_PREC_FAST) products; the float-activation products are per precision
// (qt_gemm_ops below). matmul.c's mm_plan is the one place that chooses.
typedef struct {
    qt_type vec_dot_type;        // the type activations are converted to
    qt_from_float_fn from_float; // float -> vec_dot_type rows (fast)
    qt_to_float_fn to_float;     // this type -> float rows (fast dequantization)
    qt_vec_dot_fn vec_dot;       // one row pair; NULL: no matmul support for this weight type
    qt_gemv_fn gemv;             // T == 1 (decode); set wherever vec_dot is
    qt_gemm_fn gemm;             // T > 1 tiles; set wherever vec_dot is
    // 2..small_max_t tokens (a server's decode step, with or without a
    // prompt chunk) on the file's own layout, each weight loaded and
    // unpacked once for all of them; the gemm's contract (any n_cols), each
    // token's result the gemv's. NULL: the gemv per token over row blocks
    // for T <= small_max_t.
    qt_gemm_fn gemm_small;
    // up to where gemm_small (without one: the gemv per token) beats gemm
    // (bench/bench-batch.c); 0: QT_MATMUL_GEMV_MAX_T
    int small_max_t;
} qt_kernel_traits;

// A weight matrix as the float-activation gemms read it: rows `stride` bytes
// apart in `type`, dequantized by `to_float` (the table's) straight into the
// gemm's packed panels, never materialised in full.
typedef struct {
    const void *data;            // row 0
    size_t stride;               // bytes between rows
    qt_type type;
    qt_to_float_fn to_float;
} qt_wmat;

// The float-activation products of one precision (f32: fp32 products and
// sums; bf16: both operands rounded to bfloat16 (nearest even), products
// exact, summed in fp32: PyTorch autocast's matmul).
typedef struct {
    // C (M, N) += A (M, K) @ B (K, N), row-major, leading dimensions lda, ldb, ldc.
    void (*gemm_acc)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float *C, int64_t ldc);
    // C (M, N) = A (M, K) @ B (K, N): gemm_acc without reading C. Optional
    // (NULL: C zeroed, then gemm_acc).
    void (*gemm_set)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float *C, int64_t ldc);
    // C (M, N) += A (M, K) @ B (K, N) with A given transposed: At (K, M), rows
    // ldat apart. Optional (NULL: qt_gemm_acc_at transposes At first).
    void (*gemm_acc_at)(int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat, const float *B, int64_t ldb,
                        float *C, int64_t ldc);
    // C (M, N) += A (M, K) @ W[0:K, n0:n0+N]: W's K rows in any type with a
    // to_float; n0 and N multiples of its block size (qt_matmul_t: dx += dy @ W).
    // ap: A (all M rows) already packed by pack_x(M, K, A, lda), or NULL.
    void (*gemm_acc_w)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap, const qt_wmat *W,
                       int64_t n0, float *C, int64_t ldc);
    // y (T, n_rows) = x (T, n) @ W[0:n_rows, :]^T, W any type with a to_float;
    // rows of x ldx floats apart, of y ldy. xp: x already packed by pack_x
    // (threads working on different rows share one packing), or NULL.
    void (*gemm_xwt)(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W,
                     float *y, int64_t ldy, int64_t n_rows);
    // x (T, n) packed for gemm_xwt's xp (and gemm_acc_w's ap) in pack_x_size(T, n)
    // floats; thread ith of nth packs its share. Optional (NULL: no pre-packing).
    size_t (*pack_x_size)(int64_t T, int64_t n);
    void (*pack_x)(int64_t T, int64_t n, const float *x, int64_t ldx, float *xp, int ith, int nth);
} qt_gemm_ops;

// qt_matmul takes the float-activation path (gemm_xwt) for float weights
// (F32, F16, BF16) from this many tokens on at QT_PREC_FAST (below it the
// weight conversion would not pay for itself). On that path x is not rounded
// to the vec_dot_type, so results are closer to the exact product than ref's.
#define QT_MATMUL_WT_MIN_T 16
// Quantized weights with T <= this run each token's GEMV over blocks of rows
// (the gemm's weight repacking costs more than it saves on so few tokens:
// a server's decode step of a few slots).
#define QT_MATMUL_GEMV_MAX_T 8

typedef struct {
    const char *isa;                          // "ref", "avx2", "avx512", "avx512-vnni", "avx512-bf16", "neon", ...
    const char *gemv_prefetch;                // x86 decode kernels' next-pass prefetch: "l1" or "l2" (cpu.c); else NULL
    qt_kernel_traits type[QT_TYPE_COUNT];
    // float vector helpers for the layers (attention, norms, optimizers)
    float (*dot_f32)(int n, const float *x, const float *y);
    // sum x[i] * y[i] with y in fp16 (an F16 KV cache), float products and
    // sums (ref: in double, index order)
    float (*dot_f32_f16)(int n, const float *x, const uint16_t *y);
    void (*axpy_f32)(int n, float a, const float *x, float *y);   // y += a*x
    void (*scale_f32)(int n, float a, float *y);                  // y *= a
    // = f32.gemm_acc (kept for the layers until they call qt_gemm_acc)
    void (*gemm_acc_f32)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float *C, int64_t ldc);
    qt_gemm_ops f32;    // always complete
    qt_gemm_ops bf16;   // all NULL where the CPU has no bf16 dot product: QT_PREC_BF16 then runs as F32
    // bf16 runs on the CPU's own bf16 instructions (not ref's emulation): F16
    // weights' prompts take it at QT_PREC_FAST (matmul.c)
    bool bf16_hw;
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
    // sum x[i] * y[i], products and sums in double (ref: index order; the
    // SIMD tables sum in lanes, within 1e-15 of sum |x[i] y[i]| of it).
    double (*dot_f32_f64)(int n, const float *x, const float *y);
    // The softmax backward per element: out[i] = p[i] * (dp[i] - d[i] or d0) *
    // scale, in that order and without fused multiply-adds, so every table
    // gives the ref's bits; d NULL: d0 for every element; out may alias p or dp.
    void (*softmax_grad_f32)(int n, const float *p, const float *dp, const float *d, float d0, float scale, float *out);
    // RMSNorm of one row: r = 1 / sqrt(sum(x^2) / n + eps) (the sum in double:
    // ref in index order, SIMD in lanes), out[i] = x[i] * r * w[i]; returns r.
    float (*rmsnorm_f32)(int n, const float *x, const float *w, float eps, float *out);
    // Its backward for one row (w frozen): c = sum(dout * w * x) * r^3 / n
    // (double), dx[i] += dout[i] * w[i] * r - c * x[i].
    void (*rmsnorm_backward_f32)(int n, const float *dout, const float *x, const float *w, float r, float *dx);
} qt_kernel_table;

// Bound on the SIMD exp_f32's relative error against exact exp for results
// >= FLT_MIN: measured worst 8.5e-8 (1.01 ulp) over every float, AVX2;
// tests/test-kernels.c checks a sweep on every table.
#define QT_EXP_MAX_REL_ERR 1.5e-7

// Kernel tables, one per feature set the CPU may have. Each adds to the one
// before it (an AVX-512 CPU runs AVX2 code, VNNI CPUs have AVX-512 BW):
//   ref          scalar C, every CPU: the oracle the others are tested against
//   avx2         AVX2 + FMA + F16C (Haswell, Zen 1-3)
//   avx512       + AVX-512 F/BW/VL/DQ: 512-bit f32 gemm, k-quant decode (Skylake-X)
//   avx512-vnni  + VNNI: int8 dot products: Q4_0 / Q8_0 / Q4_K decode and prefill (Ice Lake, Cascade Lake)
//   avx512-bf16  + BF16: bf16 gemm for QT_PREC_BF16 and BF16 weights (Zen 4/5, Sapphire Rapids)
//   neon         arm64 NEON + dotprod; its bf16 ops (BFMMLA) where HWCAP2 says BF16
typedef enum {
    QT_ISA_REF, QT_ISA_AVX2, QT_ISA_AVX512, QT_ISA_AVX512_VNNI, QT_ISA_AVX512_BF16, QT_ISA_NEON, QT_ISA_COUNT
} qt_isa;
const char *qt_isa_name(qt_isa isa);
// NULL if this build and CPU run isa's table, else why not ("not built for
// this architecture", "CPU lacks avx512_bf16").
const char *qt_isa_unavailable(qt_isa isa);
// isa's table, built on first use; NULL where qt_isa_unavailable says why
// (building a table runs code compiled for its ISA, so the check comes first).
const qt_kernel_table *qt_kernels_for(qt_isa isa);
// Shorthands for qt_kernels_for (qt_kernels_avx512: the best AVX-512 table this CPU runs).
const qt_kernel_table *qt_kernels_ref(void);
const qt_kernel_table *qt_kernels_avx2(void);
const qt_kernel_table *qt_kernels_avx512(void);
const qt_kernel_table *qt_kernels_neon(void);

// CPU feature detection (cpu.c).
typedef struct {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
    bool neon, dotprod, neon_bf16, i8mm;
    int l1d_kib;   // L1 data cache per core, KiB (0: unknown)
} qt_cpu_features;
const qt_cpu_features *qt_cpu(void);
// Whether this CPU runs the table (false for NULL).
bool qt_kernels_runnable(const qt_kernel_table *table);

// The best table this CPU runs, unless the environment variable
// QT_ISA=ref|avx2|avx512|avx512-vnni|avx512-bf16|neon asks for another (tests
// and benchmarks). Read once when a backend (or a test) builds its qt_kctx;
// nothing below this header consults it: every driver takes its table
// explicitly. Thread-safe.
const qt_kernel_table *qt_kernels(void);
// Pick the table qt_kernels() returns (tests): NULL restores the automatic choice.
void qt_kernels_set(const qt_kernel_table *table);

// How products treat their operands.
//   FAST: activations may be rounded to the weight type's vec_dot_type (Q8_0,
//         Q8_K, F16: llama.cpp's inference numerics).
//   F32:  x stays float32 and W is dequantized to float32: the training
//         path, QLoRA's dequantized-weight math within fp32 rounding.
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

// y (T, n_out) = x (T, n_in) @ W^T, where W is (n_out, n_in) in wtype, on
// the pool's threads. How x and W meet depends on kc->prec (see qt_prec and
// matmul.c's mm_plan): at FAST, x is converted once to the vec_dot_type;
// at F32 / BF16, x stays float and W is dequantized into the float gemm's
// panels. n_in must be a multiple of wtype's block size.
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
// dx (T, n_in) += dy (T, n_out) @ W, in kc->prec (FAST as F32). W is read row
// by row in its stored type (dequantized into the gemm's panels), never
// materialised in full precision.
void qt_matmul_t(const qt_kctx *kc, float *dx, const float *dy, const void *w, qt_type wtype, int64_t n_in,
                 int64_t n_out, int64_t T);

// C (M, N) += A (M, K) @ B (K, N), float32 row-major, on the calling thread
// only (the layers call it from inside their own pool workers), in kc->prec:
// BF16 rounds A and B to bfloat16 where the table has a bf16 gemm, F32 and
// FAST multiply in fp32.
void qt_gemm_acc(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc);
// C (M, N) += At^T (M, K) @ B (K, N), At (K, M) rows ldat apart: qt_gemm_acc
// with its A given transposed.
void qt_gemm_acc_at(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *At, int64_t ldat, const float *B,
                    int64_t ldb, float *C, int64_t ldc);
// C (M, N) = A (M, K) @ B (K, N), as qt_gemm_acc but C written, not read.
void qt_gemm_set(const qt_kctx *kc, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc);

// The float-activation products kc->prec selects: the table's bf16 ops at
// QT_PREC_BF16 where it has them, else its f32 ops.
static inline const qt_gemm_ops *qt_gemm_ops_for(const qt_kctx *kc) {
    return kc->prec == QT_PREC_BF16 && kc->kt->bf16.gemm_acc ? &kc->kt->bf16 : &kc->kt->f32;
}

// Whether prompts on weights of type wtype (qt_matmul at QT_PREC_FAST,
// T >= QT_MATMUL_WT_MIN_T) run on the CPU's own bf16 products: BF16 and F16
// weights on a table with bf16_hw. (BF16 weights also take ref's emulated
// bf16 ops, the products its vec_dot_type pairs them with.)
static inline bool qt_matmul_bf16_hw(const qt_kernel_table *kt, qt_type wtype) {
    return kt->bf16_hw && (wtype == QT_TYPE_BF16 || wtype == QT_TYPE_F16);
}

// Dequantize row `row` of W (n_in elements) into dst.
void qt_get_row(const qt_kernel_table *kt, float *dst, const void *w, qt_type wtype, int64_t n_in, int64_t row);

#endif
