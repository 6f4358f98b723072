// quant-kquants.c: scalar reference (de)quantizers of the k-quants q2_K, q3_K,
// q4_K, q5_K, q6_K (super-blocks of 256 with quantized sub-block scales).
//
// Follows ggml-quants.c (llama.cpp) quantize_row_q*_K_ref and
// dequantize_row_q*_K, keeping their scale searches (make_qx_quants,
// make_q3_quants, make_qkx2_quants) and operation order so that, without an
// imatrix, our bytes equal llama-quantize's. Not here: the imatrix-weighted
// variants (quantize_row_q*_K_impl), SIMD (kernels/).
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant.h"
#include "quant/quant-impl.h"
#include "quant/types.h"

#define FP16(x) qt_fp16_to_fp32(x)
#define TO_FP16(x) qt_fp32_to_fp16(x)
#define CLAMP(v, lo, hi) QT_MAX((lo), QT_MIN((hi), (v)))

void qt_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    // 8 sub-blocks, a 6-bit scale and min each, in 12 bytes:
    //   q[0..3]:  scale j (low 6 bits), top 2 bits of scale j+4 in bits 6..7
    //   q[4..7]:  min j   (low 6 bits), top 2 bits of min j+4 in bits 6..7
    //   q[8..11]: low nibble of scale j+4 | low nibble of min j+4 << 4
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// The 16 signed 6-bit scales of a q3_K block (already minus 32).
static void q3_K_scales(const uint8_t *s, int *sc) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

// ---- dequantization ----

void qt_dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = FP16(x[i].d), min = FP16(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        // two halves of 128: byte l of the half holds elements l, l+32, l+64, l+96
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int h = 0; h < 2; h++, is++) {
                    const uint8_t sc = x[i].scales[is];
                    const float dl = d * (sc & 0xf), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[16 * h + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void qt_dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d_all = FP16(x[i].d);
        int sc[16];
        q3_K_scales(x[i].scales, sc);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int h = 0; h < 2; h++, is++) {
                    const float dl = d_all * sc[is];
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[16 * h + l] >> shift) & 3) - ((hm[16 * h + l] & m) ? 0 : 4);
                        *y++ = dl * v;
                    }
                }
            }
        }
    }
}

void qt_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = FP16(x[i].d), min = FP16(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            qt_get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            qt_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

void qt_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = FP16(x[i].d), min = FP16(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            qt_get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            qt_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void qt_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = FP16(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

// ---- scale searches (ggml make_qx_quants / make_q3_quants / make_qkx2_quants) ----

// Symmetric codes L[i] in [0, 2*nmax) for x ~ scale * (L - nmax), weights x^2:
// try iscale = -(nmax + 0.1*is) / max for is = -9..9 and keep the least-squares
// scale with the best weighted fit (ggml make_qx_quants, rmse_type 1, no qw).
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < QT_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = CLAMP(qt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = CLAMP(qt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = CLAMP(qt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Symmetric 3-bit codes in [0, 8) with coordinate-descent refinement of each
// code under weights x^2 (ggml make_q3_quants with do_rmse).
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < QT_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = CLAMP(qt_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = CLAMP(qt_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric codes L[i] in [0, nmax] for x ~ scale * L - the_min: start from
// the min/max range, then try iscale = (rmin + rdelta*is + nmax) / (max - min)
// for is = 0..nstep, solving weighted least squares for scale and min each
// time and keeping the best (ggml make_qkx2_quants).
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = qt_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)CLAMP(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = CLAMP(qt_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// 2-bit codes of 256 elements into 64 bytes: byte 32*h + l holds elements
// 128*h + l + 32*g in bits 2g..2g+1 (q2_K and q3_K low bits).
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; l++) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
        }
    }
}

// ---- quantization ----

void qt_quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)qt_nearest_int(iscale * scales[j]);
            y[i].d = TO_FP16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = TO_FP16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++) {
                y[i].scales[j] |= (uint8_t)((unsigned)qt_nearest_int(iscale * mins[j]) << 4);
            }
            y[i].dmin = TO_FP16(max_min / q4scale);
        } else {
            y[i].dmin = TO_FP16(0.f);
        }
        // re-derive the codes against the scales as stored
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = FP16(y[i].d) * (y[i].scales[j] & 0xf);
            if (!d) continue;
            const float dm = FP16(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (uint8_t)CLAMP(qt_nearest_int((x[16 * j + l] + dm) / d), 0, 3);
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

void qt_quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max_scale = scales[j]; }
        }
        memset(y[i].scales, 0, sizeof(y[i].scales));
        if (max_scale) {
            // 6-bit scales: low nibbles in bytes 0..7 (j and j+8), top 2 bits in bytes 8..11
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = CLAMP(qt_nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xf);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = TO_FP16(1 / iscale);
        } else {
            y[i].d = TO_FP16(0.f);
        }
        int sc[16];
        q3_K_scales(y[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = FP16(y[i].d) * sc[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (int8_t)(CLAMP(qt_nearest_int(x[16 * j + l] / d), -4, 3) + 4);
            }
        }
        // high bit of element j goes to hmask[j % 32], bit j / 32
        memset(y[i].hmask, 0, sizeof(y[i].hmask));
        for (int j = 0; j < QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1 << (j / 32));
                L[j] -= 4;
            }
        }
        pack_2bit((const uint8_t *)L, y[i].qs);
    }
}

// Shared by q4_K (nmax 15) and q5_K (nmax 31): per sub-block of 32, asymmetric
// scale and min, then both quantized to 6 bits against the super-block maxima.
// Leaves the final codes in L.
static void quantize_kx_superblock(const float *x, int nmax, float rmin, int nstep, uint16_t *yd,
                                   uint16_t *ydmin, uint8_t *yscales, uint8_t *L) {
    uint8_t Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        // ggml stores nearest_int into uint8_t, then clamps to 63
        uint8_t ls = (uint8_t)qt_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qt_nearest_int(inv_min * mins[j]);
        ls = QT_MIN(63, ls);
        lm = QT_MIN(63, lm);
        if (j < 4) {
            yscales[j] = ls;
            yscales[j + 4] = lm;
        } else {
            yscales[j + 4] = (uint8_t)((ls & 0xf) | (lm & 0xf) << 4);
            yscales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            yscales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *yd = TO_FP16(max_scale / 63.f);
    *ydmin = TO_FP16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        qt_get_scale_min_k4(j, yscales, &sc, &m);
        const float d = FP16(*yd) * sc;
        if (!d) continue;
        const float dm = FP16(*ydmin) * m;
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = (uint8_t)CLAMP(qt_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
        }
    }
}

void qt_quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    uint8_t L[QK_K];
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        quantize_kx_superblock(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        // byte 32*p + l: element 64*p + l (low nibble), 64*p + 32 + l (high)
        for (int p = 0; p < QK_K / 64; p++) {
            for (int l = 0; l < 32; l++) {
                y[i].qs[32 * p + l] = (uint8_t)(L[64 * p + l] | L[64 * p + 32 + l] << 4);
            }
        }
    }
}

void qt_quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    uint8_t L[QK_K];
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        quantize_kx_superblock(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        // low nibbles as q4_K; the 5th bit of element e goes to qh[e % 32], bit e / 32
        memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int p = 0; p < QK_K / 64; p++) {
            for (int l = 0; l < 32; l++) {
                int l1 = L[64 * p + l], l2 = L[64 * p + 32 + l];
                y[i].qs[32 * p + l] = (uint8_t)((l1 & 0xf) | (l2 & 0xf) << 4);
                y[i].qh[l] |= (uint8_t)((l1 >> 4) << (2 * p) | (l2 >> 4) << (2 * p + 1));
            }
        }
    }
}

void qt_quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < QT_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = TO_FP16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++) {
            y[i].scales[ib] = (int8_t)QT_MIN(127, qt_nearest_int(iscale * scales[ib]));
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = FP16(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                L[16 * j + l] = (int8_t)(CLAMP(qt_nearest_int(x[16 * j + l] / d), -32, 31) + 32);
            }
        }
        // per half h of 128: ql[64h + l] = e(l) | e(l+64) << 4, ql[64h + 32 + l] =
        // e(l+32) | e(l+96) << 4; qh[32h + l] holds the top 2 bits of the four
        for (int h = 0; h < QK_K / 128; h++) {
            const uint8_t *Lh = (const uint8_t *)L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xf) | (Lh[l + 64] & 0xf) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xf) | (Lh[l + 96] & 0xf) << 4);
                qh[l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                                  (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}
