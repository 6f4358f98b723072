// kernels-ref.c: the scalar kernel table, the oracle every SIMD table is
// tested against, and the fallback on CPUs without a SIMD table.
//
// Every quantized vec_dot decodes a weight block to small integers plus a
// float scale (and min) per group, exactly as the dequantizers in
// quant/quant-ref.c define the values, and takes an integer dot with the
// activation block; blocks are summed in double. Pairing (vec_dot_type) as in
// GGML except Q4_1/Q5_1, which pair with Q8_0 (the min term uses the exact
// sum of the activation quants instead of Q8_1's fp16-rounded one).
// The float-activation products (qt_gemm_ops, fp32 and bf16) are plain
// loops: the bf16 ones round both operands to bfloat16 and sum exact
// products in double (PyTorch autocast's matmul up to the summation order).
// Deliberately not fast; no gemm tiles. Follows ggml-quants.c (llama.cpp).
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/nf4-kernels.h"
#include "kernels/vecmath-internal.h"
#include "quant/blocks.h"
#include "quant/quant.h"

// ---- float types ----

static void vec_dot_f32_ref(int n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * y[i];
    *s = (float)sum;
}

static void vec_dot_f16_ref(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)qt_fp16_to_fp32(x[i]) * qt_fp16_to_fp32(y[i]);
    *s = (float)sum;
}

static void vec_dot_bf16_ref(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)qt_bf16_to_fp32(x[i]) * qt_bf16_to_fp32(y[i]);
    *s = (float)sum;
}

// ---- blocks of 32 against Q8_0: x = d*q + m ----

typedef struct {
    int8_t q[32];
    float d, m;
} decoded32;

static void decode_q4_0(const block_q4_0 *b, decoded32 *o) {
    for (int j = 0; j < 16; j++) {
        o->q[j] = (int8_t)((b->qs[j] & 0xf) - 8);
        o->q[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
    }
    o->d = qt_fp16_to_fp32(b->d);
    o->m = 0;
}

static void decode_q4_1(const block_q4_1 *b, decoded32 *o) {
    for (int j = 0; j < 16; j++) {
        o->q[j] = (int8_t)(b->qs[j] & 0xf);
        o->q[j + 16] = (int8_t)(b->qs[j] >> 4);
    }
    o->d = qt_fp16_to_fp32(b->d);
    o->m = qt_fp16_to_fp32(b->m);
}

static void decode_q5_0(const block_q5_0 *b, decoded32 *o) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    for (int j = 0; j < 16; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
        o->q[j] = (int8_t)(((b->qs[j] & 0xf) | (h0 << 4)) - 16);
        o->q[j + 16] = (int8_t)(((b->qs[j] >> 4) | (h1 << 4)) - 16);
    }
    o->d = qt_fp16_to_fp32(b->d);
    o->m = 0;
}

static void decode_q5_1(const block_q5_1 *b, decoded32 *o) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    for (int j = 0; j < 16; j++) {
        int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
        o->q[j] = (int8_t)((b->qs[j] & 0xf) | (h0 << 4));
        o->q[j + 16] = (int8_t)((b->qs[j] >> 4) | (h1 << 4));
    }
    o->d = qt_fp16_to_fp32(b->d);
    o->m = qt_fp16_to_fp32(b->m);
}

static void decode_q8_0(const block_q8_0 *b, decoded32 *o) {
    memcpy(o->q, b->qs, 32);
    o->d = qt_fp16_to_fp32(b->d);
    o->m = 0;
}

static void decode_iq4_nl(const block_iq4_nl *b, decoded32 *o) {
    for (int j = 0; j < 16; j++) {
        o->q[j] = qt_kvalues_iq4nl[b->qs[j] & 0xf];
        o->q[j + 16] = qt_kvalues_iq4nl[b->qs[j] >> 4];
    }
    o->d = qt_fp16_to_fp32(b->d);
    o->m = 0;
}

static double dot32_q8_0(const decoded32 *x, const block_q8_0 *y) {
    int sumi = 0, sumy = 0;
    for (int j = 0; j < 32; j++) {
        sumi += x->q[j] * y->qs[j];
        sumy += y->qs[j];
    }
    double dy = qt_fp16_to_fp32(y->d);
    return dy * ((double)x->d * sumi + (double)x->m * sumy);
}

#define VEC_DOT_32(name, block)                                                  \
    static void vec_dot_##name##_ref(int n, float *s, const void *vx, const void *vy) { \
        const block *x = vx;                                                      \
        const block_q8_0 *y = vy;                                                 \
        double sum = 0;                                                           \
        for (int i = 0; i < n / 32; i++) {                                        \
            decoded32 dx;                                                         \
            decode_##name(&x[i], &dx);                                            \
            sum += dot32_q8_0(&dx, &y[i]);                                        \
        }                                                                         \
        *s = (float)sum;                                                          \
    }
VEC_DOT_32(q4_0, block_q4_0)
VEC_DOT_32(q4_1, block_q4_1)
VEC_DOT_32(q5_0, block_q5_0)
VEC_DOT_32(q5_1, block_q5_1)
VEC_DOT_32(q8_0, block_q8_0)
VEC_DOT_32(iq4_nl, block_iq4_nl)
#undef VEC_DOT_32

// ---- k-quants against Q8_K: x = sc[g]*q - mn[g] for 16 groups of 16 ----

typedef struct {
    int8_t q[QK_K];
    float sc[QK_K / 16], mn[QK_K / 16];
} decoded256;

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void decode_q2_K(const block_q2_K *b, decoded256 *o) {
    float d = qt_fp16_to_fp32(b->d), dmin = qt_fp16_to_fp32(b->dmin);
    const uint8_t *q = b->qs;
    int g = 0, k = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++, g++) {
                o->sc[g] = d * (b->scales[g] & 0xf);
                o->mn[g] = dmin * (b->scales[g] >> 4);
                for (int l = 0; l < 16; l++) o->q[k++] = (int8_t)((q[l + 16 * half] >> shift) & 3);
            }
        }
    }
}

static void decode_q3_K(const block_q3_K *b, decoded256 *o) {
    float d = qt_fp16_to_fp32(b->d);
    // 16 6-bit scales: low 4 bits in scales[0..7] (two per byte), high 2 bits in scales[8..11]
    int sc[16];
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? b->scales[j] & 0xf : b->scales[j - 8] >> 4;
        int hi = (b->scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
    const uint8_t *q = b->qs;
    int g = 0, k = 0, m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; half++, g++) {
                o->sc[g] = d * sc[g];
                o->mn[g] = 0;
                for (int l = 0; l < 16; l++) {
                    int ll = l + 16 * half;
                    o->q[k++] = (int8_t)(((q[ll] >> shift) & 3) - ((b->hmask[ll] & m) ? 0 : 4));
                }
            }
        }
    }
}

static void decode_q4_K(const block_q4_K *b, decoded256 *o) {
    float d = qt_fp16_to_fp32(b->d), dmin = qt_fp16_to_fp32(b->dmin);
    for (int j = 0; j < QK_K / 64; j++) {
        const uint8_t *q = b->qs + 32 * j;
        int sc0, m0, sc1, m1;
        scale_min_k4(2 * j, b->scales, &sc0, &m0);
        scale_min_k4(2 * j + 1, b->scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            o->q[64 * j + l] = (int8_t)(q[l] & 0xf);
            o->q[64 * j + 32 + l] = (int8_t)(q[l] >> 4);
        }
        for (int h = 0; h < 2; h++) {
            o->sc[4 * j + h] = d * sc0;
            o->mn[4 * j + h] = dmin * m0;
            o->sc[4 * j + 2 + h] = d * sc1;
            o->mn[4 * j + 2 + h] = dmin * m1;
        }
    }
}

static void decode_q5_K(const block_q5_K *b, decoded256 *o) {
    float d = qt_fp16_to_fp32(b->d), dmin = qt_fp16_to_fp32(b->dmin);
    for (int j = 0; j < QK_K / 64; j++) {
        const uint8_t *q = b->qs + 32 * j;
        int sc0, m0, sc1, m1;
        scale_min_k4(2 * j, b->scales, &sc0, &m0);
        scale_min_k4(2 * j + 1, b->scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            int h0 = (b->qh[l] >> (2 * j)) & 1, h1 = (b->qh[l] >> (2 * j + 1)) & 1;
            o->q[64 * j + l] = (int8_t)((q[l] & 0xf) | (h0 << 4));
            o->q[64 * j + 32 + l] = (int8_t)((q[l] >> 4) | (h1 << 4));
        }
        for (int h = 0; h < 2; h++) {
            o->sc[4 * j + h] = d * sc0;
            o->mn[4 * j + h] = dmin * m0;
            o->sc[4 * j + 2 + h] = d * sc1;
            o->mn[4 * j + 2 + h] = dmin * m1;
        }
    }
}

static void decode_q6_K(const block_q6_K *b, decoded256 *o) {
    float d = qt_fp16_to_fp32(b->d);
    for (int n = 0; n < 2; n++) {
        const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
        int8_t *q = o->q + 128 * n;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
    for (int g = 0; g < 16; g++) {
        o->sc[g] = d * b->scales[g];
        o->mn[g] = 0;
    }
}

static double dot256_q8_K(const decoded256 *x, const block_q8_K *y) {
    double sum = 0;
    for (int g = 0; g < QK_K / 16; g++) {
        int sumi = 0, sumy = 0;
        for (int l = 0; l < 16; l++) {
            sumi += x->q[16 * g + l] * y->qs[16 * g + l];
            sumy += y->qs[16 * g + l];
        }
        sum += (double)x->sc[g] * sumi - (double)x->mn[g] * sumy;
    }
    return sum * y->d;
}

#define VEC_DOT_K(name, block)                                                   \
    static void vec_dot_##name##_ref(int n, float *s, const void *vx, const void *vy) { \
        const block *x = vx;                                                      \
        const block_q8_K *y = vy;                                                 \
        double sum = 0;                                                           \
        for (int i = 0; i < n / QK_K; i++) {                                      \
            decoded256 dx;                                                        \
            decode_##name(&x[i], &dx);                                            \
            sum += dot256_q8_K(&dx, &y[i]);                                       \
        }                                                                         \
        *s = (float)sum;                                                          \
    }
VEC_DOT_K(q2_K, block_q2_K)
VEC_DOT_K(q3_K, block_q3_K)
VEC_DOT_K(q4_K, block_q4_K)
VEC_DOT_K(q5_K, block_q5_K)
VEC_DOT_K(q6_K, block_q6_K)
#undef VEC_DOT_K

// ---- float helpers ----

static float dot_f32_ref(int n, const float *x, const float *y) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * y[i];
    return (float)sum;
}

static float dot_f32_f16_ref(int n, const float *x, const uint16_t *y) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * qt_fp16_to_fp32(y[i]);
    return (float)sum;
}

static void axpy_f32_ref(int n, float a, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale_f32_ref(int n, float a, float *y) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

// ---- float-activation products (qt_gemm_ops), the oracle for the SIMD gemms ----

// C (M, N) += A (M, K) @ B (K, N), fp32, k ascending per element
static void gemm_acc_f32_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                             float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) {
            float a = A[i * lda + k];
            const float *b = B + k * ldb;
            float *c = C + i * ldc;
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
}

// bf16: both operands rounded to bfloat16 (nearest even); the products of
// two bf16 values are exact in fp32, summed here in double.
static inline float bf(float x) { return qt_bf16_to_fp32(qt_fp32_to_bf16(x)); }

static void gemm_acc_bf16_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                              int64_t ldb, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)bf(A[i * lda + k]) * bf(B[k * ldb + j]);
            C[i * ldc + j] += (float)s;
        }
}

// W[0:K, n0:n0+N] dequantized to a float (K, N) matrix (caller frees)
static float *w_block(const qt_wmat *W, int64_t n0, int64_t N, int64_t K) {
    const qt_type_traits *tt = qt_type_traits_get(W->type);
    QT_ASSERT(n0 % tt->blck_size == 0 && N % tt->blck_size == 0);
    float *b = qt_malloc(sizeof(float) * (size_t)(N * K + 1));
    for (int64_t k = 0; k < K; k++)
        W->to_float((const char *)W->data + (size_t)k * W->stride + (size_t)(n0 / tt->blck_size) * tt->type_size,
                    b + k * N, N);
    return b;
}

static void gemm_acc_w_f32_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                               const qt_wmat *W, int64_t n0, float *C, int64_t ldc) {
    float *b = w_block(W, n0, N, K);
    gemm_acc_f32_ref(M, N, K, A, lda, b, N, C, ldc);
    qt_free(b);
}

static void gemm_acc_w_bf16_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *ap,
                                const qt_wmat *W, int64_t n0, float *C, int64_t ldc) {
    float *b = w_block(W, n0, N, K);
    gemm_acc_bf16_ref(M, N, K, A, lda, b, N, C, ldc);
    qt_free(b);
}

// y (T, n_rows) = x (T, n) @ W^T: each W row dequantized once, dots in double
static void gemm_xwt_ref(int64_t T, int64_t n, const float *x, int64_t ldx, const qt_wmat *W, float *y, int64_t ldy,
                         int64_t n_rows, bool bf16) {
    float *row = qt_malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t r = 0; r < n_rows; r++) {
        W->to_float((const char *)W->data + (size_t)r * W->stride, row, n);
        if (bf16)
            for (int64_t k = 0; k < n; k++) row[k] = bf(row[k]);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * ldx;
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += (double)(bf16 ? bf(xt[k]) : xt[k]) * row[k];
            y[t * ldy + r] = (float)s;
        }
    }
    qt_free(row);
}

static void gemm_xwt_f32_ref(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W,
                             float *y, int64_t ldy, int64_t n_rows) {
    gemm_xwt_ref(T, n, x, ldx, W, y, ldy, n_rows, false);
}

static void gemm_xwt_bf16_ref(int64_t T, int64_t n, const float *x, int64_t ldx, const float *xp, const qt_wmat *W,
                              float *y, int64_t ldy, int64_t n_rows) {
    gemm_xwt_ref(T, n, x, ldx, W, y, ldy, n_rows, true);
}

// ---- the table ----

static qt_kernel_table *g_ref;

static void set(qt_type t, qt_type vdt, qt_vec_dot_fn vec_dot) {
    const qt_type_traits *tt = qt_type_traits_get(t), *vt = qt_type_traits_get(vdt);
    g_ref->type[t].vec_dot_type = vdt;
    g_ref->type[t].vec_dot = vec_dot;
    g_ref->type[t].to_float = tt->to_float;
    g_ref->type[t].from_float = tt->from_float_ref;
    // the activation type's own conversions must be present for matmul
    g_ref->type[vdt].to_float = vt->to_float;
    g_ref->type[vdt].from_float = vt->from_float_ref;
}

// Called once, by cpu.c, on a zeroed table.
void qt_kernels_fill_ref(qt_kernel_table *kt) {
    g_ref = kt;
    // conversions for every type that has them, vec_dot where defined
    for (int t = 0; t < QT_TYPE_COUNT; t++) {
        const qt_type_traits *tt = qt_type_traits_get(t);
        if (!tt) continue;
        kt->type[t].vec_dot_type = (qt_type)t;
        kt->type[t].to_float = tt->to_float;
        kt->type[t].from_float = tt->from_float_ref;
    }
    set(QT_TYPE_F32, QT_TYPE_F32, vec_dot_f32_ref);
    set(QT_TYPE_F16, QT_TYPE_F16, vec_dot_f16_ref);
    set(QT_TYPE_BF16, QT_TYPE_BF16, vec_dot_bf16_ref);
    set(QT_TYPE_Q4_0, QT_TYPE_Q8_0, vec_dot_q4_0_ref);
    set(QT_TYPE_Q4_1, QT_TYPE_Q8_0, vec_dot_q4_1_ref);
    set(QT_TYPE_Q5_0, QT_TYPE_Q8_0, vec_dot_q5_0_ref);
    set(QT_TYPE_Q5_1, QT_TYPE_Q8_0, vec_dot_q5_1_ref);
    set(QT_TYPE_Q8_0, QT_TYPE_Q8_0, vec_dot_q8_0_ref);
    set(QT_TYPE_IQ4_NL, QT_TYPE_Q8_0, vec_dot_iq4_nl_ref);
    set(QT_TYPE_NF4, QT_TYPE_F32, qt_vec_dot_nf4_ref);   // nf4-ref.c
    set(QT_TYPE_Q2_K, QT_TYPE_Q8_K, vec_dot_q2_K_ref);
    set(QT_TYPE_Q3_K, QT_TYPE_Q8_K, vec_dot_q3_K_ref);
    set(QT_TYPE_Q4_K, QT_TYPE_Q8_K, vec_dot_q4_K_ref);
    set(QT_TYPE_Q5_K, QT_TYPE_Q8_K, vec_dot_q5_K_ref);
    set(QT_TYPE_Q6_K, QT_TYPE_Q8_K, vec_dot_q6_K_ref);
    kt->dot_f32 = dot_f32_ref;
    kt->dot_f32_f16 = dot_f32_f16_ref;
    kt->axpy_f32 = axpy_f32_ref;
    kt->scale_f32 = scale_f32_ref;
    kt->f32 = (qt_gemm_ops){ .gemm_acc = gemm_acc_f32_ref, .gemm_acc_w = gemm_acc_w_f32_ref, .gemm_xwt = gemm_xwt_f32_ref };
    // the bf16 oracle: the tables without bf16 hardware clear these (BF16 then runs as F32)
    kt->bf16 = (qt_gemm_ops){ .gemm_acc = gemm_acc_bf16_ref, .gemm_acc_w = gemm_acc_w_bf16_ref,
                              .gemm_xwt = gemm_xwt_bf16_ref };
    qt_vecmath_set_ref(kt);
}
