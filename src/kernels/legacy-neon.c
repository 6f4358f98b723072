// legacy-neon.c: the legacy 32-element GGUF types with arm64 NEON:
//   Q4_1    x = d q + m, q 4 bits unsigned
//   Q5_0    x = d (q - 16), q 5 bits
//   Q5_1    x = d q + m, q 5 bits unsigned
//   IQ4_NL  x = d kvalues_iq4nl[q] (to_float only: its vec_dot and gemm
//           tiles are kernels-neon.c's)
// vec_dot  against Q8_0 activations (kernels-ref.c's pairing, also for Q4_1
//          and Q5_1): the 32 weights of a block as two int8x16, dotted with
//          the activation quants by vdotq_s32 (vmull_s8 + vpadalq_s16
//          without dotprod, kernels-neon.c's dot16); Q4_1/Q5_1's min term
//          m d_y sum(y) takes the exact integer sum of the activation quants
//          (a dot with ones). Integer sums are exact, so the result differs
//          from the reference (sums in double) only by the float products and
//          their sum. Two blocks per step, as kernels-neon.c's Q4_0.
// to_float the reference's arithmetic (q * d, then + m; no fma), bit-exact
//          with qt_dequantize_row_q4_1 / _q5_0 / _q5_1 / _iq4_nl.
// The blocks' unpacking: quants-neon.h.
// Follows ggml-cpu's ggml_vec_dot_q4_1_q8_1, _q5_0_q8_0 and _q5_1_q8_1
// (arch/arm/quants.c), with Q8_0 in place of Q8_1.
// Their gemm tiles, gemv and gemm_small are kernels-neon.c's (SDOT) and
// gemm-neoni8mm.c's (SMMLA tiles).
#include "kernels/kernels.h"
#include "kernels/legacy-kernels.h"
#include "kernels/quants-neon.h"
#include "kernels/simd-neon.h"

#include <arm_neon.h>
#include <string.h>

#include "base/base.h"
#include "quant/blocks.h"

// ---- vec_dot against Q8_0 ----

// acc + d_x d_y (q . y), q signed
static inline float32x4_t block_sym(int8x16_t lo, int8x16_t hi, float dx, const block_q8_0 *y, float32x4_t acc) {
    int32x4_t p = dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y->qs)), hi, vld1q_s8(y->qs + 16));
    return vfmaq_n_f32(acc, vcvtq_f32_s32(p), dx * fp16_to_f32(y->d));
}

// acc + d_x d_y (u . y) + m_x d_y sum(y), u unsigned (0..31, so also valid int8)
static inline float32x4_t block_affine(uint8x16_t lo, uint8x16_t hi, float dx, float mx, const block_q8_0 *y,
                                       float32x4_t acc) {
    const int8x16_t yl = vld1q_s8(y->qs), yh = vld1q_s8(y->qs + 16), one = vdupq_n_s8(1);
    const float dy = fp16_to_f32(y->d);
    int32x4_t p = dot16(dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), yl), vreinterpretq_s8_u8(hi), yh);
    int32x4_t sy = dot16(dot16(vdupq_n_s32(0), one, yl), one, yh);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), dx * dy);
    return vfmaq_n_f32(acc, vcvtq_f32_s32(sy), mx * dy);
}

// one block's contribution: acc + its d_x d_y (q . y) (+ m_x d_y sum(y))
static inline float32x4_t q4_1_step(const block_q4_1 *b, const block_q8_0 *y, float32x4_t acc) {
    uint8x16_t l, h;
    q4_1_u(b, &l, &h);
    return block_affine(l, h, fp16_to_f32(b->d), fp16_to_f32(b->m), y, acc);
}
static inline float32x4_t q5_0_step(const block_q5_0 *b, const block_q8_0 *y, float32x4_t acc) {
    int8x16_t l, h;
    q5_0_s(b, &l, &h);
    return block_sym(l, h, fp16_to_f32(b->d), y, acc);
}
static inline float32x4_t q5_1_step(const block_q5_1 *b, const block_q8_0 *y, float32x4_t acc) {
    uint8x16_t l, h;
    q5_1_u(b, &l, &h);
    return block_affine(l, h, fp16_to_f32(b->d), fp16_to_f32(b->m), y, acc);
}

// The vec_dot of a type: two blocks per step, one accumulator each.
#define VEC_DOT(type)                                                                     \
    static void vec_dot_##type##_q8_0_neon(int n, float *s, const void *vx, const void *vy) { \
        QT_ASSERT(n % QK8_0 == 0);                                                        \
        const block_##type *x = vx;                                                       \
        const block_q8_0 *y = vy;                                                         \
        const int nb = n / QK8_0;                                                         \
        float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);                         \
        int i = 0;                                                                        \
        for (; i + 2 <= nb; i += 2) {                                                     \
            acc0 = type##_step(&x[i], &y[i], acc0);                                       \
            acc1 = type##_step(&x[i + 1], &y[i + 1], acc1);                               \
        }                                                                                 \
        if (i < nb) acc0 = type##_step(&x[i], &y[i], acc0);                               \
        *s = vaddvq_f32(vaddq_f32(acc0, acc1));                                           \
    }

VEC_DOT(q4_1)
VEC_DOT(q5_0)
VEC_DOT(q5_1)

// ---- to_float ----

// y[0..15] = v * d, v signed bytes
static inline void store16_s8(float *y, int8x16_t v, float d) {
    int16x8_t a = vmovl_s8(vget_low_s8(v)), b = vmovl_high_s8(v);
    vst1q_f32(y + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(a)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(b)), d));
}

// y[0..15] = v * d + m, v unsigned bytes: mul then add, as the reference
static inline void store16_u8_affine(float *y, uint8x16_t v, float d, float m) {
    uint16x8_t a = vmovl_u8(vget_low_u8(v)), b = vmovl_high_u8(v);
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(y + 0, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(a))), d), vm));
    vst1q_f32(y + 4, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(a)), d), vm));
    vst1q_f32(y + 8, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(b))), d), vm));
    vst1q_f32(y + 12, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(b)), d), vm));
}

// Q4_1 and Q5_1: q * d + m per block
#define TO_FLOAT_AFFINE(type)                                                  \
    static void to_float_##type##_neon(const void *vx, float *y, int64_t k) { \
        QT_ASSERT(k % QK8_0 == 0);                                             \
        const block_##type *x = vx;                                            \
        for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {                  \
            uint8x16_t l, h;                                                   \
            type##_u(&x[i], &l, &h);                                           \
            const float d = fp16_to_f32(x[i].d), m = fp16_to_f32(x[i].m);      \
            store16_u8_affine(y, l, d, m);                                     \
            store16_u8_affine(y + 16, h, d, m);                                \
        }                                                                      \
    }

TO_FLOAT_AFFINE(q4_1)
TO_FLOAT_AFFINE(q5_1)

static void to_float_q5_0_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK5_0 == 0);
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < k / QK5_0; i++, y += QK5_0) {
        int8x16_t l, h;
        q5_0_s(&x[i], &l, &h);
        const float d = fp16_to_f32(x[i].d);
        store16_s8(y, l, d);
        store16_s8(y + 16, h, d);
    }
}

static void to_float_iq4_nl_neon(const void *vx, float *y, int64_t k) {
    QT_ASSERT(k % QK4_NL == 0);
    const block_iq4_nl *x = vx;
    const int8x16_t kv = vld1q_s8(qt_kvalues_iq4nl);
    for (int64_t i = 0; i < k / QK4_NL; i++, y += QK4_NL) {
        uint8x16_t l, h;
        nibbles(x[i].qs, &l, &h);
        const float d = fp16_to_f32(x[i].d);
        store16_s8(y, vqtbl1q_s8(kv, l), d);
        store16_s8(y + 16, vqtbl1q_s8(kv, h), d);
    }
}

// ---- the table ----

// vec_dot only where the table pairs the type with Q8_0 (as kernels-ref.c does)
static void set(qt_kernel_traits *t, qt_type type, qt_vec_dot_fn vec_dot, qt_to_float_fn to_float) {
    if (vec_dot && t[type].vec_dot_type == QT_TYPE_Q8_0) t[type].vec_dot = vec_dot;
    t[type].to_float = to_float;
}

void qt_legacy_set_neon(qt_kernel_traits *t) {
    set(t, QT_TYPE_Q4_1, vec_dot_q4_1_q8_0_neon, to_float_q4_1_neon);
    set(t, QT_TYPE_Q5_0, vec_dot_q5_0_q8_0_neon, to_float_q5_0_neon);
    set(t, QT_TYPE_Q5_1, vec_dot_q5_1_q8_0_neon, to_float_q5_1_neon);
    set(t, QT_TYPE_IQ4_NL, NULL, to_float_iq4_nl_neon);
}
