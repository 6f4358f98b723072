// kernels-neon.c: the arm64 NEON kernel table (Apple Silicon, Graviton, recent
// Cortex). It starts as a copy of the scalar reference table and overrides the
// hot paths: vec_dot for F32, F16, BF16, Q4_0/Q8_0/IQ4_NL x Q8_0 and
// Q4_K/Q5_K/Q6_K x Q8_K and NF4 x F32; gemm tiles (2 weight rows x 4
// activation rows, SDOT) for the 32-element types (Q4_0, Q8_0, IQ4_NL, Q4_1,
// Q5_0, Q5_1) and the k-quants (Q4_K, Q5_K, Q6_K), replaced by
// gemm-neoni8mm.c's SMMLA tiles (4 x 4) where HWCAP2 says I8MM; from_float
// to Q8_0, Q8_K, F16 and BF16; to_float (bit-identical to the reference) for
// F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K and NF4, so QLoRA training's
// dequantized base rows are not scalar work; and the f32 vector helpers.
// The legacy types' vec_dot and to_float: legacy-neon.c; the blocks'
// unpacking: quants-neon.h.
//
// Multi-row decode (gemv, 4 rows per pass) for those types, and its
// several-token form (gemm_small, a server's decode step); the float-
// activation products (training, QT_PREC_F32/BF16) on the packed gemm of
// gemm-neon.c and, where HWCAP2 says BF16, gemm-neonbf16.c.
//
// Deliberately not here: SVE and fp16 arithmetic (F16 is widened to f32 so
// dot products are as accurate as the reference). None of this is timed on
// arm64 hardware yet (the tests run under qemu-user).
//
// Integer dot products use vdotq_s32 when the compiler targets the dotprod
// extension (__ARM_FEATURE_DOTPROD, ARMv8.2-a+dotprod, every Apple M chip) and
// vmull_s8 + vpadalq_s16 otherwise; only horizontal sums of the accumulators
// are used, so both give the same integers. The quantizers reproduce the
// scalar reference bit for bit (same scale, same rounding).
//
// Reference: block layouts in quant/blocks.h (GGML's ggml-common.h); the
// behaviour follows GGML's ggml/src/ggml-cpu/arch/arm/quants.c.
#include "kernels/kernels.h"
#include "kernels/legacy-kernels.h"
#include "kernels/matmul-internal.h"
#include "kernels/quants-neon.h"
#include "kernels/simd-neon.h"
#include "kernels/vecmath-internal.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "quant/blocks.h"
#include "quant/nf4.h"
#include "quant/quant.h"

// ---- helpers --------------------------------------------------------------

// ---- f32 vector helpers ---------------------------------------------------

#define AS_FLOAT(v) (v)

// The float dots' one body: sum x[i] * y[i] over n elements, x and y loaded
// 4 at a time as floats by LX / LY and one at a time by SX / SY (the ragged
// tail); four accumulators, summed lane-wise and then across.
#define DOT_F32_BODY(n, x, y, LX, LY, SX, SY)                                                  \
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;                                 \
    int i = 0;                                                                                \
    for (; i + 16 <= (n); i += 16) {                                                          \
        s0 = vfmaq_f32(s0, LX((x) + i), LY((y) + i));                                         \
        s1 = vfmaq_f32(s1, LX((x) + i + 4), LY((y) + i + 4));                                 \
        s2 = vfmaq_f32(s2, LX((x) + i + 8), LY((y) + i + 8));                                 \
        s3 = vfmaq_f32(s3, LX((x) + i + 12), LY((y) + i + 12));                               \
    }                                                                                         \
    for (; i + 4 <= (n); i += 4) s0 = vfmaq_f32(s0, LX((x) + i), LY((y) + i));                \
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));                  \
    for (; i < (n); i++) sum += SX((x)[i]) * SY((y)[i]);

static float dot_f32_neon(int n, const float *x, const float *y) {
    DOT_F32_BODY(n, x, y, vld1q_f32, vld1q_f32, AS_FLOAT, AS_FLOAT)
    return sum;
}

static void axpy_f32_neon(int n, float a, const float *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
        vst1q_f32(y + i + 4, vfmaq_n_f32(vld1q_f32(y + i + 4), vld1q_f32(x + i + 4), a));
    }
    for (; i < n; i++) y[i] += a * x[i];
}

static void scale_f32_neon(int n, float a, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
        vst1q_f32(y + i + 4, vmulq_n_f32(vld1q_f32(y + i + 4), a));
    }
    for (; i < n; i++) y[i] *= a;
}

static void vec_dot_f32_neon(int n, float *s, const void *x, const void *y) {
    *s = dot_f32_neon(n, x, y);
}

// ---- F16 and BF16 ---------------------------------------------------------

static inline float32x4_t load_f16x4(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// bf16 -> f32 is a 16-bit left shift of the bit pattern.
static inline float32x4_t load_bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

// x float, y fp16 (an F16 KV cache)
static float dot_f32_f16_neon(int n, const float *x, const uint16_t *y) {
    DOT_F32_BODY(n, x, y, vld1q_f32, load_f16x4, AS_FLOAT, fp16_to_f32)
    return sum;
}

static void vec_dot_f16_neon(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    DOT_F32_BODY(n, x, y, load_f16x4, load_f16x4, fp16_to_f32, fp16_to_f32)
    *s = sum;
}

static void vec_dot_bf16_neon(int n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    DOT_F32_BODY(n, x, y, load_bf16x4, load_bf16x4, qt_bf16_to_fp32, qt_bf16_to_fp32)
    *s = sum;
}

static void to_float_f16_neon(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) dst[i] = fp16_to_f32(x[i]);
}

// Hardware conversion rounds to nearest even, like qt_fp32_to_fp16.
static void from_float_f16_neon(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(src + i)), vld1q_f32(src + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) y[i] = qt_fp32_to_fp16(src[i]);
}

static void to_float_bf16_neon(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; i++) dst[i] = qt_bf16_to_fp32(x[i]);
}

// Round to nearest even on the bit pattern, NaNs made quiet: qt_fp32_to_bf16.
static inline uint16x4_t f32_to_bf16x4(float32x4_t f) {
    uint32x4_t u = vreinterpretq_u32_f32(f);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    uint32x4_t qnan = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    return vmovn_u32(vbslq_u32(nan, qnan, r));
}

static void from_float_bf16_neon(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, f32_to_bf16x4(vld1q_f32(src + i)));
    for (; i < n; i++) y[i] = qt_fp32_to_bf16(src[i]);
}

// ---- Q8_0 and Q4_0 --------------------------------------------------------

// Same arithmetic as the reference: d = amax/127, q = round-half-away(x/d).
static void quantize_row_q8_0_neon(const float *x, void *vy, int64_t k) {
    QT_ASSERT(k % QK8_0 == 0);
    block_q8_0 *y = vy;
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK8_0;
        float32x4_t v[8];
        float32x4_t amax = vdupq_n_f32(0);
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(xb + 4 * j);
            amax = vmaxnmq_f32(amax, vabsq_f32(v[j]));
        }
        const float d = vmaxnmvq_f32(amax) / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        for (int j = 0; j < 8; j += 2) {
            int32x4_t a = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j], id)));
            int32x4_t b = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j + 1], id)));
            int16x8_t h = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            vst1_s8(y[i].qs + 4 * j, vmovn_s16(h));
        }
    }
}

static void dequantize_row_q8_0_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK8_0 == 0);
    const block_q8_0 *x = vx;
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; j += 8) {
            int16x8_t q = vmovl_s8(vld1_s8(x[i].qs + j));
            vst1q_f32(y + i * QK8_0 + j, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), d));
            vst1q_f32(y + i * QK8_0 + j + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(q)), d));
        }
    }
}

static void dequantize_row_q4_0_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK4_0 == 0);
    const block_q4_0 *x = vx;
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_f32(x[i].d);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0xF))), vdupq_n_s8(8));
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
        float *yb = y + i * QK4_0;
        for (int h = 0; h < 2; h++) {
            int8x16_t v = h ? hi : lo;
            int16x8_t a = vmovl_s8(vget_low_s8(v)), b = vmovl_high_s8(v);
            vst1q_f32(yb + 16 * h + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), d));
            vst1q_f32(yb + 16 * h + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(a)), d));
            vst1q_f32(yb + 16 * h + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), d));
            vst1q_f32(yb + 16 * h + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(b)), d));
        }
    }
}

// ---- k-quant and NF4 dequantization (to_float): what training's float
// products and the prompt path of types without a gemm read, bit-identical
// to the reference (the same float operations in the same order, no fused
// multiply-add) ----

// y[0..15] = d * q - m for 16 unsigned quants (Q4_K/Q5_K's affine sub-blocks)
static inline void affine16_neon(float *y, uint8x16_t q, float d, float m) {
    const uint16x8_t a = vmovl_u8(vget_low_u8(q)), b = vmovl_high_u8(q);
    const float32x4_t mv = vdupq_n_f32(m);
    vst1q_f32(y + 0, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(a))), d), mv));
    vst1q_f32(y + 4, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(a)), d), mv));
    vst1q_f32(y + 8, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(b))), d), mv));
    vst1q_f32(y + 12, vsubq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(b)), d), mv));
}

// Q4_K (q5 false) and Q5_K (q5: quant l of sub-block j adds 16 where bit j of qh[l] is set)
static inline void dequantize_k45_neon(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, float d,
                                       float min, float *y) {
    for (int is = 0; is < 8; is += 2, qs += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int h = 0; h < 2; h++) {
            const uint8x16_t v = vld1q_u8(qs + 16 * h);
            uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0xF)), hi = vshrq_n_u8(v, 4);
            if (qh) {
                const uint8x16_t b = vld1q_u8(qh + 16 * h), b16 = vdupq_n_u8(16);
                lo = vorrq_u8(lo, vandq_u8(vtstq_u8(b, vdupq_n_u8((uint8_t)(1u << is))), b16));
                hi = vorrq_u8(hi, vandq_u8(vtstq_u8(b, vdupq_n_u8((uint8_t)(2u << is))), b16));
            }
            affine16_neon(y + 16 * h, lo, d1, m1);
            affine16_neon(y + 32 + 16 * h, hi, d2, m2);
        }
    }
}

static void dequantize_row_q4_K_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++)
        dequantize_k45_neon(x[i].qs, NULL, x[i].scales, fp16_to_f32(x[i].d), fp16_to_f32(x[i].dmin), y + i * QK_K);
}

static void dequantize_row_q5_K_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++)
        dequantize_k45_neon(x[i].qs, x[i].qh, x[i].scales, fp16_to_f32(x[i].d), fp16_to_f32(x[i].dmin),
                            y + i * QK_K);
}

// y[0..15] = ds * q for 16 signed quants
static inline void scaled16_neon(float *y, int8x16_t q, float ds) {
    const int16x8_t a = vmovl_s8(vget_low_s8(q)), b = vmovl_high_s8(q);
    vst1q_f32(y + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), ds));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(a)), ds));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), ds));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(b)), ds));
}

// Q6_K: per 128 quants, ql 64 bytes (low nibbles: quants 0..63, high: 64..127)
// and qh 32 bytes (bits 2k, 2k+1 of qh[l]: quant l + 32k); minus 32; one
// int8 scale per 16 quants
static void dequantize_row_q6_K_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    const block_q6_K *x = vx;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3);
    const int8x16_t o32 = vdupq_n_s8(32);
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int h = 0; h < 2; h++) {   // quants l = 16h .. 16h + 15 of each quarter
                const uint8x16_t a = vld1q_u8(ql + 16 * h), b = vld1q_u8(ql + 32 + 16 * h);
                const uint8x16_t hb = vld1q_u8(qh + 16 * h);
                const uint8x16_t q1 = vorrq_u8(vandq_u8(a, m4), vshlq_n_u8(vandq_u8(hb, m3), 4));
                const uint8x16_t q2 = vorrq_u8(vandq_u8(b, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m3), 4));
                const uint8x16_t q3 = vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m3), 4));
                const uint8x16_t q4 = vorrq_u8(vshrq_n_u8(b, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4));
                scaled16_neon(y + 16 * h, vsubq_s8(vreinterpretq_s8_u8(q1), o32), d * sc[h + 0]);
                scaled16_neon(y + 32 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(q2), o32), d * sc[h + 2]);
                scaled16_neon(y + 64 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(q3), o32), d * sc[h + 4]);
                scaled16_neon(y + 96 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(q4), o32), d * sc[h + 6]);
            }
        }
    }
}

// NF4: the 16-entry float code book split into its 4 byte planes (vld4q_u8),
// so one table lookup per plane gives a byte of 16 values, and two rounds of
// zips put the bytes back together as floats: code[q] exactly, then * d.
typedef struct {
    uint8x16x4_t p;
} nf4_planes;

static inline nf4_planes nf4_planes_neon(void) {
    uint8_t bytes[64];
    memcpy(bytes, qt_nf4_values, sizeof(bytes));
    return (nf4_planes){vld4q_u8(bytes)};
}

// the code book values of 16 indices as 4 float vectors (index order)
static inline void nf4_lookup16(const nf4_planes *t, uint8x16_t idx, float32x4_t v[4]) {
    const uint8x16_t b0 = vqtbl1q_u8(t->p.val[0], idx), b1 = vqtbl1q_u8(t->p.val[1], idx);
    const uint8x16_t b2 = vqtbl1q_u8(t->p.val[2], idx), b3 = vqtbl1q_u8(t->p.val[3], idx);
    const uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), h01 = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
    const uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), h23 = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
    v[0] = vreinterpretq_f32_u16(vzip1q_u16(l01, l23));
    v[1] = vreinterpretq_f32_u16(vzip2q_u16(l01, l23));
    v[2] = vreinterpretq_f32_u16(vzip1q_u16(h01, h23));
    v[3] = vreinterpretq_f32_u16(vzip2q_u16(h01, h23));
}

// element 2j is qs[j]'s high nibble, 2j + 1 its low nibble
static inline void nf4_block_values(const nf4_planes *t, const block_nf4 *b, float32x4_t v[16]) {
    for (int h = 0; h < 2; h++) {
        const uint8x16_t q = vld1q_u8(b->qs + 16 * h);
        const uint8x16_t hi = vshrq_n_u8(q, 4), lo = vandq_u8(q, vdupq_n_u8(0xF));
        nf4_lookup16(t, vzip1q_u8(hi, lo), v + 8 * h);
        nf4_lookup16(t, vzip2q_u8(hi, lo), v + 8 * h + 4);
    }
}

static void dequantize_row_nf4_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK_NF4 == 0);
    const block_nf4 *x = vx;
    const nf4_planes t = nf4_planes_neon();
    for (int64_t i = 0; i < k / QK_NF4; i++) {
        float32x4_t v[16];
        nf4_block_values(&t, &x[i], v);
        for (int j = 0; j < 16; j++) vst1q_f32(y + i * QK_NF4 + 4 * j, vmulq_n_f32(v[j], x[i].d));
    }
}

// NF4 x float32: per block the sum of code[q] * x, then times d
static void vec_dot_nf4_f32_neon(int n, float *s, const void *vx, const void *vy) {
    QT_ASSERT(n % QK_NF4 == 0);
    const block_nf4 *x = vx;
    const float *y = vy;
    const nf4_planes t = nf4_planes_neon();
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK_NF4; i++, y += QK_NF4) {
        float32x4_t v[16], a0 = vdupq_n_f32(0), a1 = a0;
        nf4_block_values(&t, &x[i], v);
        for (int j = 0; j < 16; j += 2) {
            a0 = vfmaq_f32(a0, v[j], vld1q_f32(y + 4 * j));
            a1 = vfmaq_f32(a1, v[j + 1], vld1q_f32(y + 4 * j + 4));
        }
        acc = vfmaq_n_f32(acc, vaddq_f32(a0, a1), x[i].d);
    }
    *s = vaddvq_f32(acc);
}

static void vec_dot_q8_0_q8_0_neon(int n, float *s, const void *vx, const void *vy) {
    QT_ASSERT(n % QK8_0 == 0);
    const block_q8_0 *x = vx, *y = vy;
    const int nb = n / QK8_0;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 2 <= nb; i += 2) {
        int32x4_t p0 = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        p0 = dot16(p0, vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        int32x4_t p1 = dot16(vdupq_n_s32(0), vld1q_s8(x[i + 1].qs), vld1q_s8(y[i + 1].qs));
        p1 = dot16(p1, vld1q_s8(x[i + 1].qs + 16), vld1q_s8(y[i + 1].qs + 16));
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p1), fp16_to_f32(x[i + 1].d) * fp16_to_f32(y[i + 1].d));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < nb; i++) {
        int32x4_t p = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        p = dot16(p, vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        sum += (float)vaddvq_s32(p) * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
    }
    *s = sum;
}

static void vec_dot_q4_0_q8_0_neon(int n, float *s, const void *vx, const void *vy) {
    QT_ASSERT(n % QK8_0 == 0);
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int nb = n / QK8_0;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 2 <= nb; i += 2) {
        int8x16_t l0, h0, l1, h1;
        unpack_q4_0(&x[i], &l0, &h0);
        unpack_q4_0(&x[i + 1], &l1, &h1);
        int32x4_t p0 = dot16(dot16(vdupq_n_s32(0), l0, vld1q_s8(y[i].qs)), h0, vld1q_s8(y[i].qs + 16));
        int32x4_t p1 = dot16(dot16(vdupq_n_s32(0), l1, vld1q_s8(y[i + 1].qs)), h1, vld1q_s8(y[i + 1].qs + 16));
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p1), fp16_to_f32(x[i + 1].d) * fp16_to_f32(y[i + 1].d));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < nb; i++) {
        int8x16_t l, h;
        unpack_q4_0(&x[i], &l, &h);
        int32x4_t p = dot16(dot16(vdupq_n_s32(0), l, vld1q_s8(y[i].qs)), h, vld1q_s8(y[i].qs + 16));
        sum += (float)vaddvq_s32(p) * fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
    }
    *s = sum;
}

// ---- multi-row decode (gemv): 4 weight rows per pass share each activation
// block's loads; per-row int32 dots scaled into per-row float accumulators,
// reduced together at the end. The next pass's rows are prefetched.

// Prefetch rows r .. r+k-1 (those below n_rows): the next pass of a decode kernel.
static inline void prefetch_rows(const void *w, size_t ws, int r, int k, int n_rows) {
    if (r < n_rows)
        for (size_t o = 0; o < (size_t)k * ws && r + (int)(o / ws) < n_rows; o += 64)
            __builtin_prefetch((const char *)w + (size_t)r * ws + o);
}

// The 4 rows of the pass at r0 (past n_rows: the last row again, nothing read
// out of range), and the next pass's rows prefetched.
static inline void rows4(const void *w, size_t ws, int r0, int n_rows, const void *row[4]) {
    for (int i = 0; i < 4; i++) row[i] = (const char *)w + (size_t)QT_MIN(r0 + i, n_rows - 1) * ws;
    prefetch_rows(w, ws, r0 + 4, 4, n_rows);
}

// One (row, token) step on a 32-element block, shared by the gemv and
// gemm_small so both do the same arithmetic: acc + d_w d_x (q . x)
// (+ m_w d_x sum(x); sy: that sum as floats).
static inline __attribute__((always_inline)) float32x4_t q32_dot_step(qt_type t, int8x16_t l, int8x16_t h, float d,
                                                                      float m, int8x16_t xl, int8x16_t xh, float dx,
                                                                      float32x4_t sy, float32x4_t acc) {
    int32x4_t p = dot16(dot16(vdupq_n_s32(0), l, xl), h, xh);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), d * dx);
    if (q32_affine(t)) acc = vfmaq_n_f32(acc, sy, m * dx);
    return acc;
}
// the activation quants' sum (Q4_1 / Q5_1's min term), else unused
static inline float32x4_t q32_xsum(qt_type t, int8x16_t xl, int8x16_t xh) {
    const int8x16_t one = vdupq_n_s8(1);
    return q32_affine(t) ? vcvtq_f32_s32(dot16(dot16(vdupq_n_s32(0), one, xl), one, xh)) : vdupq_n_f32(0);
}

static inline __attribute__((always_inline)) void gemv_q32(qt_type t, int n, const void *w, size_t ws, const void *vx,
                                                           float *y, int n_rows) {
    const block_q8_0 *x = vx;
    const int nb = n / QK8_0;
    for (int r0 = 0; r0 < n_rows; r0 += 4) {
        const void *row[4];
        rows4(w, ws, r0, n_rows, row);
        float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
        for (int b = 0; b < nb; b++) {
            const int8x16_t xl = vld1q_s8(x[b].qs), xh = vld1q_s8(x[b].qs + 16);
            const float dx = fp16_to_f32(x[b].d);
            const float32x4_t sy = q32_xsum(t, xl, xh);
            for (int i = 0; i < 4; i++) {
                int8x16_t l, h;
                float d, m = 0;
                q32_unpack(t, row[i], b, &l, &h, &d, &m);
                acc[i] = q32_dot_step(t, l, h, d, m, xl, xh, dx, sy, acc[i]);
            }
        }
        float32x4_t s = vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3]));
        float out[4];
        vst1q_f32(out, s);
        for (int i = 0; i < 4 && r0 + i < n_rows; i++) y[r0 + i] = out[i];
    }
}
static void vec_dot_iq4_nl_q8_0_neon(int n, float *s, const void *vx, const void *vy) {
    QT_ASSERT(n % QK8_0 == 0);
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int nb = n / QK8_0;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < nb; i++) {
        int8x16_t l, h;
        unpack_iq4_nl(&x[i], &l, &h);
        int32x4_t p = dot16(dot16(vdupq_n_s32(0), l, vld1q_s8(y[i].qs)), h, vld1q_s8(y[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

// ---- gemm tiles for the 32-element types (x Q8_0) ---------------------------

// Tiles of GEMM_R weight rows x GEMM_C activation rows: each weight block is
// unpacked once for GEMM_C columns and each activation block loaded once for
// GEMM_R rows. Ragged edges repeat the last row or column (computed, not
// stored). Q4_1 / Q5_1 add m_w d_x sum(x) per block (the activation quants'
// sum by a dot with ones), as their vec_dot does. Where HWCAP2 says I8MM,
// gemm-neoni8mm.c's SMMLA tiles replace these.
// GCC and clang both take this pragma; fully unrolled, the accumulators stay in registers.
enum { GEMM_R = 2, GEMM_C = 4 };
#define UNROLL _Pragma("GCC unroll 4")

static inline __attribute__((always_inline)) void gemm_q32_tiles(qt_type t, int n, const void *w, size_t w_stride,
                                                                 const void *x, size_t x_stride, float *y,
                                                                 size_t y_stride, int n_rows, int n_cols) {
    QT_ASSERT(n % QK8_0 == 0);
    const int nb = n / QK8_0;
    for (int r = 0; r < n_rows; r += GEMM_R) {
        const char *wr[GEMM_R];
        tile_rows(w, w_stride, r, n_rows, GEMM_R, wr);
        for (int c = 0; c < n_cols; c += GEMM_C) {
            const char *xc[GEMM_C];
            tile_rows(x, x_stride, c, n_cols, GEMM_C, xc);
            float32x4_t acc[GEMM_R][GEMM_C];
            UNROLL for (int a = 0; a < GEMM_R; a++)
                UNROLL for (int b = 0; b < GEMM_C; b++) acc[a][b] = vdupq_n_f32(0);
            for (int i = 0; i < nb; i++) {
                int8x16_t wl[GEMM_R], wh[GEMM_R];
                float wd[GEMM_R], wm[GEMM_R] = {0};
                UNROLL for (int a = 0; a < GEMM_R; a++) q32_unpack(t, wr[a], i, &wl[a], &wh[a], &wd[a], &wm[a]);
                UNROLL for (int b = 0; b < GEMM_C; b++) {
                    const block_q8_0 *xq = (const block_q8_0 *)xc[b] + i;
                    const int8x16_t xl = vld1q_s8(xq->qs), xh = vld1q_s8(xq->qs + 16);
                    const float xd = fp16_to_f32(xq->d);
                    const float32x4_t sy = q32_xsum(t, xl, xh);
                    UNROLL for (int a = 0; a < GEMM_R; a++)
                        acc[a][b] = q32_dot_step(t, wl[a], wh[a], wd[a], wm[a], xl, xh, xd, sy, acc[a][b]);
                }
            }
            UNROLL for (int a = 0; a < GEMM_R; a++)
                UNROLL for (int b = 0; b < GEMM_C; b++)
                    if (r + a < n_rows && c + b < n_cols) y[(size_t)(c + b) * y_stride + r + a] = vaddvq_f32(acc[a][b]);
        }
    }
}


// The k-quants (Q4_K, Q5_K, Q6_K x Q8_K) in tiles of R rows x C columns
// (constants after inlining; at most 4 x 4): per super-block, each row's
// scales are read once and its 64-element chunks unpacked once
// (quants-neon.h) for the C columns; each group of 16's dot is scaled by its
// integer scale in int32 lanes, and the super-block's sum and offset term go
// to one float per (row, column) (kq_dot). Ragged edges repeat the last row
// or column (computed, not stored). A (row, column)'s arithmetic does not
// depend on the tile, so the gemv (4 x 1) and gemm_small (4 x 2) give the
// same bits; the gemm (2 x 4) is replaced by gemm-neoni8mm.c's SMMLA tiles
// where HWCAP2 says I8MM. With pf, each pass prefetches the next pass's rows.
enum { KQ_RMAX = 4, KQ_CMAX = 4 };
static inline __attribute__((always_inline)) void kq_tiles(qt_type t, const int R, const int C, bool pf, int n,
                                                           const void *w, size_t w_stride, const void *x,
                                                           size_t x_stride, float *y, size_t y_stride, int n_rows,
                                                           int n_cols) {
    QT_ASSERT(n % QK_K == 0 && R <= KQ_RMAX && C <= KQ_CMAX);
    const int nb = n / QK_K;
    const size_t bs = kq_block_size(t);
    for (int r = 0; r < n_rows; r += R) {
        const char *wr[KQ_RMAX];
        tile_rows(w, w_stride, r, n_rows, R, wr);
        if (pf) prefetch_rows(w, w_stride, r + R, R, n_rows);
        for (int c = 0; c < n_cols; c += C) {
            const char *xr[KQ_CMAX];
            tile_rows(x, x_stride, c, n_cols, C, xr);
            float acc[KQ_RMAX][KQ_CMAX] = {{0}};
            for (int i = 0; i < nb; i++) {
                kq_scales sc[KQ_RMAX];
                UNROLL for (int a = 0; a < R; a++) kq_scales_of(t, wr[a] + i * bs, &sc[a]);
                int32x4_t isum[KQ_RMAX][KQ_CMAX];
                UNROLL for (int a = 0; a < R; a++)
                    UNROLL for (int b = 0; b < C; b++) isum[a][b] = vdupq_n_s32(0);
                for (int j = 0; j < 4; j++) {
                    int8x16_t q[KQ_RMAX][4];
                    UNROLL for (int a = 0; a < R; a++) kq_chunk(t, wr[a] + i * bs, j, q[a]);
                    UNROLL for (int b = 0; b < C; b++) {
                        const int8_t *q8 = ((const block_q8_K *)xr[b] + i)->qs + 64 * j;
                        UNROLL for (int k = 0; k < 4; k++) {
                            const int8x16_t yv = vld1q_s8(q8 + 16 * k);
                            UNROLL for (int a = 0; a < R; a++)
                                isum[a][b] = vmlaq_n_s32(isum[a][b], dot16(vdupq_n_s32(0), q[a][k], yv), sc[a].sc[4 * j + k]);
                        }
                    }
                }
                UNROLL for (int a = 0; a < R; a++)
                    UNROLL for (int b = 0; b < C; b++) {
                        const block_q8_K *yb = (const block_q8_K *)xr[b] + i;
                        acc[a][b] += kq_dot(t, &sc[a], vaddvq_s32(isum[a][b]), kq_offset(&sc[a], yb), yb->d);
                    }
            }
            UNROLL for (int a = 0; a < R; a++)
                UNROLL for (int b = 0; b < C; b++)
                    if (r + a < n_rows && c + b < n_cols) y[(size_t)(c + b) * y_stride + r + a] = acc[a][b];
        }
    }
}

#define KQ_NEON(name, T)                                                                                        \
    static void gemm_##name##_q8_K_neon(int n, const void *w, size_t w_stride, const void *x, size_t x_stride,    \
                                        float *y, size_t y_stride, int n_rows, int n_cols) {                      \
        kq_tiles(T, 2, 4, false, n, w, w_stride, x, x_stride, y, y_stride, n_rows, n_cols);                     \
    }                                                                                                           \
    static void gemv_##name##_neon(int n, const void *w, size_t ws, const void *vx, float *y, int n_rows) {       \
        kq_tiles(T, 4, 1, true, n, w, ws, vx, 0, y, 0, n_rows, 1);                                              \
    }                                                                                                           \
    static void gemm_small_##name##_neon(int n, const void *w, size_t ws, const void *vx, size_t xs, float *y,    \
                                         size_t ys, int n_rows, int n_cols) {                                     \
        kq_tiles(T, 4, 2, true, n, w, ws, vx, xs, y, ys, n_rows, n_cols);                                       \
    }
KQ_NEON(q4_K, QT_TYPE_Q4_K)
KQ_NEON(q5_K, QT_TYPE_Q5_K)
KQ_NEON(q6_K, QT_TYPE_Q6_K)
#undef KQ_NEON

// gemm_small (a server's decode step, 2..small_max_t tokens; the gemm
// contract y[c * ys + r]): the gemv's 4-row passes, each weight block
// unpacked once and then met by every token of a round of GS_C; each
// (row, token)'s arithmetic and reduction are the gemv's, so results equal
// the gemv's bit for bit (tests/test-kernels.c). The rows stay in cache for
// the next round.
enum { GS_C = 4 };
static inline __attribute__((always_inline)) void gemm_small_q32(qt_type t, int n, const void *w, size_t ws,
                                                                 const void *vx, size_t xs, float *y, size_t ys,
                                                                 int n_rows, int n_cols) {
    const int nb = n / QK8_0;
    for (int r0 = 0; r0 < n_rows; r0 += 4) {
        const void *row[4];
        rows4(w, ws, r0, n_rows, row);
        for (int c0 = 0; c0 < n_cols; c0 += GS_C) {
            const int nc = QT_MIN(GS_C, n_cols - c0);
            float32x4_t acc[GS_C][4];
            UNROLL for (int j = 0; j < GS_C; j++)
                UNROLL for (int i = 0; i < 4; i++) acc[j][i] = vdupq_n_f32(0);
            for (int b = 0; b < nb; b++) {
                int8x16_t l[4], h[4];
                float d[4], m[4] = {0};
                UNROLL for (int i = 0; i < 4; i++) q32_unpack(t, row[i], b, &l[i], &h[i], &d[i], &m[i]);
                UNROLL for (int j = 0; j < GS_C; j++) {
                    if (j >= nc) break;
                    const block_q8_0 *x = (const block_q8_0 *)((const char *)vx + (size_t)(c0 + j) * xs) + b;
                    const int8x16_t xl = vld1q_s8(x->qs), xh = vld1q_s8(x->qs + 16);
                    const float dx = fp16_to_f32(x->d);
                    const float32x4_t sy = q32_xsum(t, xl, xh);
                    UNROLL for (int i = 0; i < 4; i++)
                        acc[j][i] = q32_dot_step(t, l[i], h[i], d[i], m[i], xl, xh, dx, sy, acc[j][i]);
                }
            }
            for (int j = 0; j < nc; j++) {
                float32x4_t s = vpaddq_f32(vpaddq_f32(acc[j][0], acc[j][1]), vpaddq_f32(acc[j][2], acc[j][3]));
                float out[4];
                vst1q_f32(out, s);
                for (int i = 0; i < 4 && r0 + i < n_rows; i++) y[(size_t)(c0 + j) * ys + r0 + i] = out[i];
            }
        }
    }
}

// The three int8 products of each 32-element type: gemm (prefill tiles),
// gemv (decode), gemm_small (a server's few-token decode step).
#define Q32_NEON(name, T)                                                                                         \
    static void gemm_##name##_q8_0_neon(int n, const void *w, size_t w_stride, const void *x, size_t x_stride,      \
                                        float *y, size_t y_stride, int n_rows, int n_cols) {                        \
        gemm_q32_tiles(T, n, w, w_stride, x, x_stride, y, y_stride, n_rows, n_cols);                              \
    }                                                                                                             \
    static void gemv_##name##_neon(int n, const void *w, size_t ws, const void *vx, float *y, int n_rows) {         \
        gemv_q32(T, n, w, ws, vx, y, n_rows);                                                                     \
    }                                                                                                             \
    static void gemm_small_##name##_neon(int n, const void *w, size_t ws, const void *vx, size_t xs, float *y,      \
                                         size_t ys, int n_rows, int n_cols) {                                       \
        gemm_small_q32(T, n, w, ws, vx, xs, y, ys, n_rows, n_cols);                                               \
    }
Q32_NEON(q4_0, QT_TYPE_Q4_0)
Q32_NEON(q8_0, QT_TYPE_Q8_0)
Q32_NEON(iq4_nl, QT_TYPE_IQ4_NL)
Q32_NEON(q4_1, QT_TYPE_Q4_1)
Q32_NEON(q5_0, QT_TYPE_Q5_0)
Q32_NEON(q5_1, QT_TYPE_Q5_1)
#undef Q32_NEON

// ---- k-quants -------------------------------------------------------------

// Same arithmetic as the reference: the element of largest magnitude (first
// one on ties) maps to -127, q = nearest-even(x * -127/max), bsums per 16.
static void quantize_row_q8_K_neon(const float *x, void *vy, int64_t k) {
    QT_ASSERT(k % QK_K == 0);
    block_q8_K *y = vy;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float32x4_t vmax = vdupq_n_f32(0);
        for (int j = 0; j < QK_K; j += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxnmvq_f32(vmax);
        if (amax == 0.0f) {
            y[i].d = 0;
            memset(y[i].qs, 0, sizeof(y[i].qs));
            memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j += 16) {
            int32x4_t q[4];
            for (int l = 0; l < 4; l++) {
                q[l] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * l), iscale));
                q[l] = vminq_s32(q[l], vdupq_n_s32(127));
            }
            int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            int16x8_t b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vst1q_s8(y[i].qs + j, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
            y[i].bsums[j / 16] = (int16_t)vaddvq_s16(vaddq_s16(a, b));
        }
        y[i].d = 1 / iscale;
    }
}

// sum over the 8 sub-blocks of 32 of min_j * sum(q8 in sub-block j)
static inline int32_t q8_K_mins_dot(const block_q8_K *y, const uint8_t mn[8]) {
    const int16x8_t bs = vpaddq_s16(vld1q_s16(y->bsums), vld1q_s16(y->bsums + 8));
    const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    int32x4_t p = vmull_s16(vget_low_s16(bs), vget_low_s16(mins));
    return vaddvq_s32(vmlal_high_s16(p, bs, mins));
}

// Q4_K and Q5_K (quant l of chunk j adds 16 where qh[l]'s bit 2j / 2j+1 is
// set: kq_chunk): per 64-element chunk, the dots of its two 32-element
// sub-blocks times their 6-bit scales, in integers.
static inline __attribute__((always_inline)) void vec_dot_k45(qt_type t, int n, float *s, const void *vx,
                                                              const void *vy) {
    QT_ASSERT(n % QK_K == 0);
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const size_t bs = kq_block_size(t);
    float sumf = 0;
    for (int i = 0; i < nb; i++) {
        const char *blk = (const char *)vx + (size_t)i * bs;
        const uint8_t *scales = t == QT_TYPE_Q4_K ? ((const block_q4_K *)blk)->scales : ((const block_q5_K *)blk)->scales;
        const uint16_t hd = t == QT_TYPE_Q4_K ? ((const block_q4_K *)blk)->d : ((const block_q5_K *)blk)->d;
        const uint16_t hm = t == QT_TYPE_Q4_K ? ((const block_q4_K *)blk)->dmin : ((const block_q5_K *)blk)->dmin;
        const float d = y[i].d * fp16_to_f32(hd);
        const float dmin = y[i].d * fp16_to_f32(hm);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) scale_min_k4(j, scales, &sc[j], &mn[j]);

        const int32_t summs = q8_K_mins_dot(&y[i], mn);

        const int8_t *q8 = y[i].qs;
        int32_t sumi = 0;
        for (int j = 0; j < 4; j++, q8 += 64) {
            int8x16_t q[4];   // sub-block 2j: q[0], q[1]; 2j+1: q[2], q[3]
            kq_chunk(t, blk, j, q);
            int32x4_t plo = dot16(dot16(vdupq_n_s32(0), q[0], vld1q_s8(q8)), q[1], vld1q_s8(q8 + 16));
            int32x4_t phi = dot16(dot16(vdupq_n_s32(0), q[2], vld1q_s8(q8 + 32)), q[3], vld1q_s8(q8 + 48));
            sumi += vaddvq_s32(plo) * sc[2 * j] + vaddvq_s32(phi) * sc[2 * j + 1];
        }
        sumf += d * (float)sumi - dmin * (float)summs;
    }
    *s = sumf;
}

static void vec_dot_q4_K_q8_K_neon(int n, float *s, const void *vx, const void *vy) {
    vec_dot_k45(QT_TYPE_Q4_K, n, s, vx, vy);
}

static void vec_dot_q5_K_q8_K_neon(int n, float *s, const void *vx, const void *vy) {
    vec_dot_k45(QT_TYPE_Q5_K, n, s, vx, vy);
}

static void vec_dot_q6_K_q8_K_neon(int n, float *s, const void *vx, const void *vy) {
    QT_ASSERT(n % QK_K == 0);
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    float sumf = 0;
    for (int i = 0; i < nb; i++) {
        const float d = y[i].d * fp16_to_f32(x[i].d);

        // The quants are stored as 0..63 with an offset of 32: take it out
        // afterwards as 32 * sum_g scale_g * sum(q8 in group g of 16).
        const int8x16_t scv = vld1q_s8(x[i].scales);
        const int16x8_t sc_lo = vmovl_s8(vget_low_s8(scv)), sc_hi = vmovl_high_s8(scv);
        int32x4_t pb = vmull_s16(vget_low_s16(sc_lo), vld1_s16(y[i].bsums));
        pb = vmlal_high_s16(pb, sc_lo, vld1q_s16(y[i].bsums));
        pb = vmlal_s16(pb, vget_low_s16(sc_hi), vld1_s16(y[i].bsums + 8));
        pb = vmlal_high_s16(pb, sc_hi, vld1q_s16(y[i].bsums + 8));
        int32_t sumi = -32 * vaddvq_s32(pb);

        // 16 groups of 16 (kq_chunk: 4 per 64-element chunk); group g uses scale g
        for (int j = 0; j < 4; j++) {
            int8x16_t q[4];
            kq_chunk(QT_TYPE_Q6_K, &x[i], j, q);
            for (int k = 0; k < 4; k++) {
                int32x4_t p = dot16(vdupq_n_s32(0), q[k], vld1q_s8(y[i].qs + 64 * j + 16 * k));
                sumi += vaddvq_s32(p) * x[i].scales[4 * j + k];
            }
        }
        sumf += d * (float)sumi;
    }
    *s = sumf;
}

// ---- the table --------------------------------------------------------------

static qt_kernel_table *g_neon;   // the table being filled (once, under cpu.c's pthread_once)

// A kernel written here for a (weight, activation) pair is only installed when
// the reference table pairs the weight type with that activation type.
static void set_vec_dot(qt_type type, qt_type vec_dot_type, qt_vec_dot_fn fn) {
    qt_kernel_traits *t = &g_neon->type[type];
    if (t->vec_dot_type != vec_dot_type) return;
    t->vec_dot = fn;
}

static void set_conv(qt_type type, qt_from_float_fn from_float, qt_to_float_fn to_float) {
    // from_float is looked up on the vec_dot_type of some weight type, so it is
    // set on the type's own entry; to_float dequantizes rows of that type.
    if (from_float) g_neon->type[type].from_float = from_float;
    if (to_float) g_neon->type[type].to_float = to_float;
}

// Called once, by cpu.c, on a copy of the ref table. bf16, i8mm: the CPU's
// HWCAP2 BF16 and I8MM bits.
void qt_kernels_fill_neon(qt_kernel_table *kt, bool bf16, bool i8mm) {
    g_neon = kt;
    kt->dot_f32 = dot_f32_neon;
    kt->dot_f32_f16 = dot_f32_f16_neon;
    kt->axpy_f32 = axpy_f32_neon;
    kt->scale_f32 = scale_f32_neon;
    qt_vecmath_set_neon(kt);

    set_vec_dot(QT_TYPE_F32, QT_TYPE_F32, vec_dot_f32_neon);
    set_vec_dot(QT_TYPE_F16, QT_TYPE_F16, vec_dot_f16_neon);
    set_vec_dot(QT_TYPE_BF16, QT_TYPE_BF16, vec_dot_bf16_neon);
    set_vec_dot(QT_TYPE_Q4_0, QT_TYPE_Q8_0, vec_dot_q4_0_q8_0_neon);
    set_vec_dot(QT_TYPE_Q8_0, QT_TYPE_Q8_0, vec_dot_q8_0_q8_0_neon);
    set_vec_dot(QT_TYPE_IQ4_NL, QT_TYPE_Q8_0, vec_dot_iq4_nl_q8_0_neon);
    set_vec_dot(QT_TYPE_Q4_K, QT_TYPE_Q8_K, vec_dot_q4_K_q8_K_neon);
    set_vec_dot(QT_TYPE_Q5_K, QT_TYPE_Q8_K, vec_dot_q5_K_q8_K_neon);
    set_vec_dot(QT_TYPE_Q6_K, QT_TYPE_Q8_K, vec_dot_q6_K_q8_K_neon);
    // the 32-element types x Q8_0 and the k-quants x Q8_K: gemm tiles (SDOT,
    // or SMMLA where the CPU has I8MM), the 4-row gemv, and gemm_small where
    // the gemv per token ran (2..8 tokens; not timed on arm64 hardware yet,
    // so not extended into the tiles' range)
    static const struct { qt_type type, x; qt_gemm_fn gemm; qt_gemv_fn gemv; qt_gemm_fn small; } int8[] = {
        {QT_TYPE_Q4_0, QT_TYPE_Q8_0, gemm_q4_0_q8_0_neon, gemv_q4_0_neon, gemm_small_q4_0_neon},
        {QT_TYPE_Q8_0, QT_TYPE_Q8_0, gemm_q8_0_q8_0_neon, gemv_q8_0_neon, gemm_small_q8_0_neon},
        {QT_TYPE_IQ4_NL, QT_TYPE_Q8_0, gemm_iq4_nl_q8_0_neon, gemv_iq4_nl_neon, gemm_small_iq4_nl_neon},
        {QT_TYPE_Q4_1, QT_TYPE_Q8_0, gemm_q4_1_q8_0_neon, gemv_q4_1_neon, gemm_small_q4_1_neon},
        {QT_TYPE_Q5_0, QT_TYPE_Q8_0, gemm_q5_0_q8_0_neon, gemv_q5_0_neon, gemm_small_q5_0_neon},
        {QT_TYPE_Q5_1, QT_TYPE_Q8_0, gemm_q5_1_q8_0_neon, gemv_q5_1_neon, gemm_small_q5_1_neon},
        {QT_TYPE_Q4_K, QT_TYPE_Q8_K, gemm_q4_K_q8_K_neon, gemv_q4_K_neon, gemm_small_q4_K_neon},
        {QT_TYPE_Q5_K, QT_TYPE_Q8_K, gemm_q5_K_q8_K_neon, gemv_q5_K_neon, gemm_small_q5_K_neon},
        {QT_TYPE_Q6_K, QT_TYPE_Q8_K, gemm_q6_K_q8_K_neon, gemv_q6_K_neon, gemm_small_q6_K_neon},
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(int8); i++) {
        qt_kernel_traits *t = &kt->type[int8[i].type];
        if (t->vec_dot_type != int8[i].x) continue;   // the reference's pairing only
        t->gemm = int8[i].gemm;
        t->gemv = int8[i].gemv;
        t->gemm_small = int8[i].small;
        t->small_max_t = 8;
    }
    if (i8mm) qt_gemm_set_i8mm_neon(kt->type);   // gemm-neoni8mm.c

    set_conv(QT_TYPE_F16, from_float_f16_neon, to_float_f16_neon);
    set_conv(QT_TYPE_BF16, from_float_bf16_neon, to_float_bf16_neon);
    set_conv(QT_TYPE_Q8_0, quantize_row_q8_0_neon, dequantize_row_q8_0_neon);
    set_conv(QT_TYPE_Q4_0, NULL, dequantize_row_q4_0_neon);
    qt_legacy_set_neon(kt->type);   // legacy-neon.c: Q4_1, Q5_0, Q5_1, IQ4_NL
    set_conv(QT_TYPE_Q8_K, quantize_row_q8_K_neon, NULL);
    set_conv(QT_TYPE_Q4_K, NULL, dequantize_row_q4_K_neon);
    set_conv(QT_TYPE_Q5_K, NULL, dequantize_row_q5_K_neon);
    set_conv(QT_TYPE_Q6_K, NULL, dequantize_row_q6_K_neon);
    set_conv(QT_TYPE_NF4, NULL, dequantize_row_nf4_neon);
    set_vec_dot(QT_TYPE_NF4, QT_TYPE_F32, vec_dot_nf4_f32_neon);
    kt->f32 = *qt_gemm_ops_f32_neon();
    // BFDOT where the CPU has it; else QT_PREC_BF16 runs as F32
    kt->bf16 = bf16 ? *qt_gemm_ops_bf16_neon() : (qt_gemm_ops){0};
    kt->bf16_hw = bf16;
}
