// gemm-neoni8mm.c: the neon table's prefill gemm for the 32-element types
// (Q4_0, Q8_0, IQ4_NL, Q4_1, Q5_0, Q5_1 x Q8_0 activations) and the
// k-quants (Q4_K, Q5_K, Q6_K x Q8_K) on SMMLA, where the CPU has I8MM
// (HWCAP2 on Linux, hw.optional.arm.FEAT_I8MM on macOS: Apple M2 and later,
// Graviton 3, Neoverse V1/N2). Built with +i8mm; kernels-neon.c installs it
// only after cpu.c's check. Not timed on arm64 hardware yet.
//
// SMMLA (vmmlaq_s32) multiplies a 2 x 8 int8 matrix by an 8 x 2 one (given as
// its two columns) into a 2 x 2 int32 block: 32 products per instruction
// against SDOT's 16. A tile is 4 weight rows x 4 activation rows as 2 x 2 such
// blocks: for each 8-element chunk of a 32-element block, two rows' chunks
// side by side in one register (vzip of their 64-bit halves) meet two
// columns' chunks, so the block's four chunks give each 2 x 2 block's exact
// integer dots. Each block's dots are scaled by d_w d_x (and Q4_1 / Q5_1 add
// m_w d_x sum(x)) into float accumulators, one lane per (row, column).
// Ragged edges repeat the last row or column (computed, not stored).
// Results equal the reference's up to float rounding (tests/test-kernels.c,
// under qemu-aarch64 -cpu max).
// Follows the Arm ARM's SMMLA and ggml-cpu's ggml_vec_dot_q4_0_q8_0 with
// nrc == 2 (arch/arm/quants.c).
#include "kernels/kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/quants-neon.h"

#include <arm_neon.h>

#include "base/base.h"

#define UNROLL _Pragma("GCC unroll 4")

// lanes {a, a, b, b} and {a, b, a, b}: the 2 x 2 block's row and column factors
static inline float32x4_t rows2(float a, float b) { return vcombine_f32(vdup_n_f32(a), vdup_n_f32(b)); }
static inline float32x4_t cols2(float a, float b) {
    const float32x2_t v = vset_lane_f32(b, vdup_n_f32(a), 1);
    return vcombine_f32(v, v);
}

// The two 8-element chunks of two 16-element vectors, interleaved: out[k]
// holds u's elements 8k..8k+7, then v's (SMMLA's two rows, or two columns).
static inline void pair16(int8x16_t u, int8x16_t v, int8x16_t out[2]) {
    const int64x2_t a = vreinterpretq_s64_s8(u), b = vreinterpretq_s64_s8(v);
    out[0] = vreinterpretq_s8_s64(vzip1q_s64(a, b));
    out[1] = vreinterpretq_s8_s64(vzip2q_s64(a, b));
}

// The same for two 32-element blocks (lo, hi halves): four chunk pairs.
static inline void pair_chunks(int8x16_t ul, int8x16_t uh, int8x16_t vl, int8x16_t vh, int8x16_t out[4]) {
    pair16(ul, vl, out);
    pair16(uh, vh, out + 2);
}

// a 4 x 4 tile's results (acc[p][q]'s lanes: rows 2p, 2p+1 x columns 2q,
// 2q+1) into y[column * y_stride + row], inside n_rows x n_cols only
static inline void store_tile(const float32x4_t acc[2][2], int r, int c, int n_rows, int n_cols, float *y,
                              size_t y_stride) {
    UNROLL for (int p = 0; p < 2; p++)
        UNROLL for (int q = 0; q < 2; q++) {
            float out[4];
            vst1q_f32(out, acc[p][q]);
            UNROLL for (int l = 0; l < 4; l++) {
                const int rr = r + 2 * p + (l >> 1), cc = c + 2 * q + (l & 1);
                if (rr < n_rows && cc < n_cols) y[(size_t)cc * y_stride + rr] = out[l];
            }
        }
}

static inline __attribute__((always_inline)) void gemm_q32_i8mm(qt_type t, int n, const void *w, size_t w_stride,
                                                                const void *x, size_t x_stride, float *y,
                                                                size_t y_stride, int n_rows, int n_cols) {
    QT_ASSERT(n % QK8_0 == 0);
    const int nb = n / QK8_0;
    const bool affine = q32_affine(t);
    for (int r = 0; r < n_rows; r += 4) {
        const char *wr[4];
        tile_rows(w, w_stride, r, n_rows, 4, wr);
        for (int c = 0; c < n_cols; c += 4) {
            const char *xc[4];
            tile_rows(x, x_stride, c, n_cols, 4, xc);
            // acc[p][q]: rows 2p, 2p+1 x columns 2q, 2q+1, lanes (2p,2q) (2p,2q+1) (2p+1,2q) (2p+1,2q+1)
            float32x4_t acc[2][2];
            UNROLL for (int p = 0; p < 2; p++) UNROLL for (int q = 0; q < 2; q++) acc[p][q] = vdupq_n_f32(0);
            for (int i = 0; i < nb; i++) {
                int8x16_t wl[4], wh[4], xl[4], xh[4], wv[2][4], xv[2][4];
                float wd[4], wm[4] = {0}, xd[4], xs[4] = {0};
                UNROLL for (int a = 0; a < 4; a++) q32_unpack(t, wr[a], i, &wl[a], &wh[a], &wd[a], &wm[a]);
                UNROLL for (int b = 0; b < 4; b++) {
                    const block_q8_0 *xq = (const block_q8_0 *)xc[b] + i;
                    xl[b] = vld1q_s8(xq->qs);
                    xh[b] = vld1q_s8(xq->qs + 16);
                    xd[b] = fp16_to_f32(xq->d);
                    if (affine) xs[b] = xd[b] * (float)(vaddlvq_s8(xl[b]) + vaddlvq_s8(xh[b]));
                }
                UNROLL for (int p = 0; p < 2; p++) {
                    pair_chunks(wl[2 * p], wh[2 * p], wl[2 * p + 1], wh[2 * p + 1], wv[p]);
                    pair_chunks(xl[2 * p], xh[2 * p], xl[2 * p + 1], xh[2 * p + 1], xv[p]);
                }
                UNROLL for (int p = 0; p < 2; p++) {
                    const float32x4_t dw = rows2(wd[2 * p], wd[2 * p + 1]);
                    const float32x4_t mw = rows2(wm[2 * p], wm[2 * p + 1]);
                    UNROLL for (int q = 0; q < 2; q++) {
                        int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), wv[p][0], xv[q][0]);
                        s = vmmlaq_s32(s, wv[p][1], xv[q][1]);
                        s = vmmlaq_s32(s, wv[p][2], xv[q][2]);
                        s = vmmlaq_s32(s, wv[p][3], xv[q][3]);
                        acc[p][q] = vfmaq_f32(acc[p][q], vcvtq_f32_s32(s), vmulq_f32(dw, cols2(xd[2 * q], xd[2 * q + 1])));
                        if (affine) acc[p][q] = vfmaq_f32(acc[p][q], mw, cols2(xs[2 * q], xs[2 * q + 1]));
                    }
                }
            }
            store_tile(acc, r, c, n_rows, n_cols, y, y_stride);
        }
    }
}

// The k-quants (Q4_K, Q5_K, Q6_K x Q8_K) the same way: per group of 16 (two
// 8-element chunks) two SMMLA per 2 x 2 block, scaled by the two rows' group
// scales in int32 lanes; per super-block the sum and offset term go to the
// float lanes (quants-neon.h's kq_scales, kq_dot).
static inline __attribute__((always_inline)) void gemm_kq_i8mm(qt_type t, int n, const void *w, size_t w_stride,
                                                               const void *x, size_t x_stride, float *y,
                                                               size_t y_stride, int n_rows, int n_cols) {
    QT_ASSERT(n % QK_K == 0);
    const int nb = n / QK_K;
    const size_t bs = kq_block_size(t);
    for (int r = 0; r < n_rows; r += 4) {
        const char *wr[4];
        tile_rows(w, w_stride, r, n_rows, 4, wr);
        for (int c = 0; c < n_cols; c += 4) {
            const char *xr[4];
            tile_rows(x, x_stride, c, n_cols, 4, xr);
            const block_q8_K *xc[4];
            UNROLL for (int b = 0; b < 4; b++) xc[b] = (const block_q8_K *)xr[b];
            float32x4_t acc[2][2];   // lanes as gemm_q32_i8mm's
            UNROLL for (int p = 0; p < 2; p++) UNROLL for (int q = 0; q < 2; q++) acc[p][q] = vdupq_n_f32(0);
            for (int i = 0; i < nb; i++) {
                kq_scales sc[4];
                UNROLL for (int a = 0; a < 4; a++) kq_scales_of(t, wr[a] + i * bs, &sc[a]);
                int32x4_t isum[2][2];
                UNROLL for (int p = 0; p < 2; p++) UNROLL for (int q = 0; q < 2; q++) isum[p][q] = vdupq_n_s32(0);
                for (int j = 0; j < 4; j++) {
                    int8x16_t wq[4][4];
                    UNROLL for (int a = 0; a < 4; a++) kq_chunk(t, wr[a] + i * bs, j, wq[a]);
                    UNROLL for (int k = 0; k < 4; k++) {
                        const int g = 4 * j + k;
                        int8x16_t xv[2][2], wv[2];
                        UNROLL for (int q = 0; q < 2; q++)
                            pair16(vld1q_s8(xc[2 * q][i].qs + 16 * g), vld1q_s8(xc[2 * q + 1][i].qs + 16 * g), xv[q]);
                        UNROLL for (int p = 0; p < 2; p++) {
                            pair16(wq[2 * p][k], wq[2 * p + 1][k], wv);
                            const int32x4_t scv = vcombine_s32(vdup_n_s32(sc[2 * p].sc[g]), vdup_n_s32(sc[2 * p + 1].sc[g]));
                            UNROLL for (int q = 0; q < 2; q++) {
                                const int32x4_t s = vmmlaq_s32(vmmlaq_s32(vdupq_n_s32(0), wv[0], xv[q][0]), wv[1], xv[q][1]);
                                isum[p][q] = vmlaq_s32(isum[p][q], s, scv);
                            }
                        }
                    }
                }
                UNROLL for (int p = 0; p < 2; p++)
                    UNROLL for (int q = 0; q < 2; q++) {
                        int32_t is[4];
                        float v[4];
                        vst1q_s32(is, isum[p][q]);
                        UNROLL for (int l = 0; l < 4; l++) {
                            const kq_scales *sa = &sc[2 * p + (l >> 1)];
                            const block_q8_K *yb = &xc[2 * q + (l & 1)][i];
                            v[l] = kq_dot(t, sa, is[l], kq_offset(sa, yb), yb->d);
                        }
                        acc[p][q] = vaddq_f32(acc[p][q], vld1q_f32(v));
                    }
            }
            store_tile(acc, r, c, n_rows, n_cols, y, y_stride);
        }
    }
}

#define GEMM_I8MM(name, T)                                                                                      \
    static void gemm_##name##_q8_0_i8mm(int n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                        float *y, size_t y_stride, int n_rows, int n_cols) {                    \
        gemm_q32_i8mm(T, n, w, w_stride, x, x_stride, y, y_stride, n_rows, n_cols);                           \
    }
GEMM_I8MM(q4_0, QT_TYPE_Q4_0)
GEMM_I8MM(q8_0, QT_TYPE_Q8_0)
GEMM_I8MM(iq4_nl, QT_TYPE_IQ4_NL)
GEMM_I8MM(q4_1, QT_TYPE_Q4_1)
GEMM_I8MM(q5_0, QT_TYPE_Q5_0)
GEMM_I8MM(q5_1, QT_TYPE_Q5_1)
#undef GEMM_I8MM
#define GEMM_KQ_I8MM(name, T)                                                                                   \
    static void gemm_##name##_q8_K_i8mm(int n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                        float *y, size_t y_stride, int n_rows, int n_cols) {                    \
        gemm_kq_i8mm(T, n, w, w_stride, x, x_stride, y, y_stride, n_rows, n_cols);                            \
    }
GEMM_KQ_I8MM(q4_K, QT_TYPE_Q4_K)
GEMM_KQ_I8MM(q5_K, QT_TYPE_Q5_K)
GEMM_KQ_I8MM(q6_K, QT_TYPE_Q6_K)
#undef GEMM_KQ_I8MM

void qt_gemm_set_i8mm_neon(qt_kernel_traits *t) {
    static const struct { qt_type type, x; qt_gemm_fn fn; } k[] = {
        {QT_TYPE_Q4_0, QT_TYPE_Q8_0, gemm_q4_0_q8_0_i8mm}, {QT_TYPE_Q8_0, QT_TYPE_Q8_0, gemm_q8_0_q8_0_i8mm},
        {QT_TYPE_IQ4_NL, QT_TYPE_Q8_0, gemm_iq4_nl_q8_0_i8mm}, {QT_TYPE_Q4_1, QT_TYPE_Q8_0, gemm_q4_1_q8_0_i8mm},
        {QT_TYPE_Q5_0, QT_TYPE_Q8_0, gemm_q5_0_q8_0_i8mm}, {QT_TYPE_Q5_1, QT_TYPE_Q8_0, gemm_q5_1_q8_0_i8mm},
        {QT_TYPE_Q4_K, QT_TYPE_Q8_K, gemm_q4_K_q8_K_i8mm}, {QT_TYPE_Q5_K, QT_TYPE_Q8_K, gemm_q5_K_q8_K_i8mm},
        {QT_TYPE_Q6_K, QT_TYPE_Q8_K, gemm_q6_K_q8_K_i8mm},
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(k); i++)
        if (t[k[i].type].vec_dot_type == k[i].x) t[k[i].type].gemm = k[i].fn;   // the reference's pairing only
}
