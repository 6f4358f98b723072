// quant-ref.c: scalar reference (de)quantizers of the 32-element block types
// (q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, iq4_nl) and of q8_K. The k-quants with
// sub-block scales are in quant-kquants.c.
//
// Follows ggml-quants.c (llama.cpp) quantize_row_*_ref / dequantize_row_*:
// same rounding, same operation order, so our bytes equal llama.cpp's for the
// same input (checked by tests/test-quant.c against a fixture of ggml output).
// Not here: imatrix-weighted quantization, the other i-quants, SIMD (kernels/).
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant.h"
#include "quant/quant-impl.h"
#include "quant/types.h"

#define FP16(x) qt_fp16_to_fp32(x)
#define TO_FP16(x) qt_fp32_to_fp16(x)

// ---- dequantization ----

void qt_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k) {
    QT_ASSERT(k % QK4_0 == 0);
    for (int64_t i = 0; i < k / QK4_0; i++, y += QK4_0) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[i].qs[j] & 0xf) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void qt_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k) {
    QT_ASSERT(k % QK4_1 == 0);
    for (int64_t i = 0; i < k / QK4_1; i++, y += QK4_1) {
        const float d = FP16(x[i].d), m = FP16(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0xf) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void qt_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k) {
    QT_ASSERT(k % QK5_0 == 0);
    for (int64_t i = 0; i < k / QK5_0; i++, y += QK5_0) {
        const float d = FP16(x[i].d);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (x[i].qs[j] & 0xf) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (q0 - 16) * d;
            y[j + QK5_0 / 2] = (q1 - 16) * d;
        }
    }
}

void qt_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k) {
    QT_ASSERT(k % QK5_1 == 0);
    for (int64_t i = 0; i < k / QK5_1; i++, y += QK5_1) {
        const float d = FP16(x[i].d), m = FP16(x[i].m);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (x[i].qs[j] & 0xf) | (int)((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = q0 * d + m;
            y[j + QK5_1 / 2] = q1 * d + m;
        }
    }
}

void qt_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k) {
    QT_ASSERT(k % QK8_0 == 0);
    for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[i].qs[j] * d;
    }
}

void qt_dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * x[i].qs[j];
    }
}

void qt_dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k) {
    QT_ASSERT(k % QK4_NL == 0);
    for (int64_t i = 0; i < k / QK4_NL; i++, y += QK4_NL) {
        const float d = FP16(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * qt_kvalues_iq4nl[x[i].qs[j] & 0xf];
            y[j + QK4_NL / 2] = d * qt_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

// ---- quantization ----

// The element of largest magnitude, with its sign (first one on ties).
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    return max;
}

// Symmetric 4/5-bit: d = max / -2^(bits-1), so the largest-magnitude element
// maps exactly to code 0 and the rest round to nearest (ties up), clamped.
void qt_quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k) {
    QT_ASSERT(k % QK4_0 == 0);
    for (int64_t i = 0; i < k / QK4_0; i++, x += QK4_0) {
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[j + QK4_0 / 2] * id + 8.5f);
            q0 = QT_MIN(15, q0); q1 = QT_MIN(15, q1);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void minmax(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX; *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

void qt_quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k) {
    QT_ASSERT(k % QK4_1 == 0);
    for (int64_t i = 0; i < k / QK4_1; i++, x += QK4_1) {
        float min, max;
        minmax(x, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        y[i].m = TO_FP16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = (int)((x[j] - min) * id + 0.5f), q1 = (int)((x[j + QK4_1 / 2] - min) * id + 0.5f);
            q0 = QT_MIN(15, q0); q1 = QT_MIN(15, q1);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void store_u32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

void qt_quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k) {
    QT_ASSERT(k % QK5_0 == 0);
    for (int64_t i = 0; i < k / QK5_0; i++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (int)(x[j] * id + 16.5f), q1 = (int)(x[j + QK5_0 / 2] * id + 16.5f);
            q0 = QT_MIN(31, q0); q1 = QT_MIN(31, q1);
            y[i].qs[j] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

void qt_quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k) {
    QT_ASSERT(k % QK5_1 == 0);
    for (int64_t i = 0; i < k / QK5_1; i++, x += QK5_1) {
        float min, max;
        minmax(x, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        y[i].m = TO_FP16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            // ggml does not clamp here; (x - min) * id <= 31 up to rounding
            int q0 = (int)((x[j] - min) * id + 0.5f), q1 = (int)((x[j + QK5_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + QK5_1 / 2);
        }
        store_u32le(y[i].qh, qh);
    }
}

static float absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = QT_MAX(amax, fabsf(x[j]));
    return amax;
}

void qt_quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k) {
    QT_ASSERT(k % QK8_0 == 0);
    for (int64_t i = 0; i < k / QK8_0; i++, x += QK8_0) {
        const float d = absmax(x, QK8_0) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void qt_quantize_row_q8_1_ref(const float *x, block_q8_1 *y, int64_t k) {
    QT_ASSERT(k % QK8_1 == 0);
    for (int64_t i = 0; i < k / QK8_1; i++, x += QK8_1) {
        const float d = absmax(x, QK8_1) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = TO_FP16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = TO_FP16(sum * d);   // s = d * sum(q), with the unrounded fp32 d
    }
}

void qt_quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        const float max = signed_absmax(x, QK_K);
        if (max == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        // -127 rather than -128: ggml needs |q| <= 127 for its iq2 SIMD paths
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = qt_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)QT_MIN(127, v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

// Index of the entry of the sorted table val[n] nearest to x (lower on ties).
static int best_index_int8(int n, const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid; else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

// One iq4_nl block: the scale minimizing sum(x^2 * (x - d*v[q])^2), searched
// over d = max / (v[0] + t), t = -7..7, each refined by least squares
// (ggml quantize_row_iq4_nl_impl with super_block_size = block_size = 32,
// no imatrix, ntry = 7, as quantize_iq4_nl does for llama-quantize).
static void quantize_block_iq4_nl(const float *x, block_iq4_nl *y) {
    enum { NTRY = 7 };
    const int8_t *values = qt_kvalues_iq4nl;
    uint8_t L[QK4_NL];
    float weight[QK4_NL];
    memset(y->qs, 0, sizeof(y->qs));
    y->d = TO_FP16(0.0f);

    float amax = 0, max = 0;
    for (int j = 0; j < QK4_NL; j++) {
        weight[j] = x[j] * x[j];
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    }
    float d = 0.0f;
    if (amax >= QT_GROUP_MAX_EPS) {
        d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < QK4_NL; j++) {
            int l = best_index_int8(16, values, id * x[j]);
            L[j] = (uint8_t)l;
            float q = values[l];
            sumqx += weight[j] * q * x[j];
            sumq2 += weight[j] * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int itry = -NTRY; itry <= NTRY; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < QK4_NL; j++) {
                int l = best_index_int8(16, values, id * x[j]);
                float q = values[l];
                sumqx += weight[j] * q * x[j];
                sumq2 += weight[j] * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
    }
    y->d = TO_FP16(d);
    // codes for the chosen (unrounded) scale; with d = 0 every code is the
    // one nearest 0 (value 1), which decodes to 0 as in ggml
    float id = d ? 1 / d : 0;
    for (int j = 0; j < QK4_NL; j++) L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
    for (int j = 0; j < QK4_NL / 2; j++) y->qs[j] = (uint8_t)(L[j] | L[j + QK4_NL / 2] << 4);
}

void qt_quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k) {
    QT_ASSERT(k % QK4_NL == 0);
    for (int64_t i = 0; i < k / QK4_NL; i++) quantize_block_iq4_nl(x + i * QK4_NL, &y[i]);
}
