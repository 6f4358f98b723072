// legacy-avx2.c: the legacy 32-element GGUF types with AVX2:
//   Q4_1    x = d q + m, q 4 bits unsigned
//   Q5_0    x = d (q - 16), q 5 bits
//   Q5_1    x = d q + m, q 5 bits unsigned
//   IQ4_NL  x = d kvalues_iq4nl[q], q 4 bits (a 16-entry signed code book)
// vec_dot  against Q8_0 activations (kernels-ref.c's pairing, also for Q4_1
//          and Q5_1): the 32 weights of a block as bytes, dotted with the
//          activation quants by maddubs (unsigned weights directly, signed
//          ones through the sign trick) and summed to 8 int32 lanes with
//          madd; Q4_1/Q5_1's min term m d_y sum(y) takes the exact integer
//          sum of the activation quants (maddubs with ones). Integer sums are
//          exact, so the result differs from the reference (sums in double)
//          only by the float products and their sum. Two blocks per step, one
//          accumulator each, as kernels-avx2.c's Q4_0.
// to_float the reference's arithmetic (q * d, then + m; no fma), bit-exact
//          with qt_dequantize_row_q4_1 / _q5_0 / _q5_1 / _iq4_nl.
// Layout (quant/blocks.h): qs[j] holds element j in its low nibble and
// element j + 16 in its high one; the fifth bit of element j is bit j of the
// little-endian u32 qh.
// Follows ggml-cpu's ggml_vec_dot_q4_1_q8_1, _q5_0_q8_0, _q5_1_q8_1 and
// _iq4_nl_q8_0 (arch/x86/quants.c, AVX2), with Q8_0 in place of Q8_1.
// Their gemm tiles are kernels-avx2.c's interleaved gemm (ig_*) and, with
// AVX-512 VNNI, kernels-avx512vnni.c's; the VNNI table's decode gemv is
// gemv-avx512vnni.c's. The block unpacking (q5_0_s, q5_1_u, iq4_nl_s, ...)
// lives in quants-avx2.h, shared with those. llama.cpp's quantizer falls
// back to Q5_0 / Q5_1 / IQ4_NL for rows that are not a multiple of 256
// (Qwen2-0.5B's 896), so k-quant files carry them.
// Deliberately not: an AVX2 gemv (decode runs vec_dot per row here).
#include "kernels/simd-x86.h"
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/legacy-kernels.h"
#include "kernels/quants-avx2.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

// ---- vec_dot against Q8_0 ----

// acc + d_x d_y (q . y), q signed
INLINE __m256 block_sym(__m256i q, float dx, const block_q8_0 *y, __m256 acc) {
    __m256i p = dot_i8(q, _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(dx * fp16(y->d)), _mm256_cvtepi32_ps(p), acc);
}

// acc + d_x d_y (u . y) + m_x d_y sum(y), u unsigned
INLINE __m256 block_affine(__m256i u, float dx, float mx, const block_q8_0 *y, __m256 acc) {
    const __m256i q8 = _mm256_loadu_si256((const __m256i *)y->qs);
    const float dy = fp16(y->d);
    __m256i p = dot_u8(u, q8), sy = dot_u8(_mm256_set1_epi8(1), q8);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy), _mm256_cvtepi32_ps(p), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(mx * dy), _mm256_cvtepi32_ps(sy), acc);
}

// one block's contribution: acc + its d_x d_y (q . y) (+ m_x d_y sum(y))
INLINE __m256 q4_1_step(const block_q4_1 *b, const block_q8_0 *y, __m256 acc) {
    return block_affine(q4_1_u(b), fp16(b->d), fp16(b->m), y, acc);
}
INLINE __m256 q5_0_step(const block_q5_0 *b, const block_q8_0 *y, __m256 acc) {
    return block_sym(q5_0_s(b), fp16(b->d), y, acc);
}
INLINE __m256 q5_1_step(const block_q5_1 *b, const block_q8_0 *y, __m256 acc) {
    return block_affine(q5_1_u(b), fp16(b->d), fp16(b->m), y, acc);
}
INLINE __m256 iq4_nl_step(const block_iq4_nl *b, const block_q8_0 *y, __m256 acc) {
    return block_sym(iq4_nl_s(b, iq4_nl_book()), fp16(b->d), y, acc);   // the book's load is hoisted
}

// The vec_dot of a type: two blocks per step, one accumulator each.
#define VEC_DOT(type)                                                        \
    static void vec_dot_##type##_avx2(int n, float *s, const void *vx, const void *vy) { \
        const block_##type *x = vx;                                          \
        const block_q8_0 *y = vy;                                            \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                      \
        int nb = n / QK8_0, i = 0;                                           \
        for (; i + 2 <= nb; i += 2) {                                        \
            acc0 = type##_step(&x[i], &y[i], acc0);                          \
            acc1 = type##_step(&x[i + 1], &y[i + 1], acc1);                  \
        }                                                                    \
        if (i < nb) acc0 = type##_step(&x[i], &y[i], acc0);                  \
        *s = hsum_ps(_mm256_add_ps(acc0, acc1));                             \
    }

VEC_DOT(q4_1)
VEC_DOT(q5_0)
VEC_DOT(q5_1)
VEC_DOT(iq4_nl)

// ---- to_float ----

static void to_float_q4_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1)
        store_u8_affine(y, q4_1_u(&x[i]), _mm256_set1_ps(fp16(x[i].d)), _mm256_set1_ps(fp16(x[i].m)));
}

static void to_float_q5_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0)
        store_i8_scaled(y, q5_0_s(&x[i]), _mm256_set1_ps(fp16(x[i].d)));
}

static void to_float_q5_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1)
        store_u8_affine(y, q5_1_u(&x[i]), _mm256_set1_ps(fp16(x[i].d)), _mm256_set1_ps(fp16(x[i].m)));
}

static void to_float_iq4_nl_avx2(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const __m256i kv = iq4_nl_book();
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL)
        store_i8_scaled(y, iq4_nl_s(&x[i], kv), _mm256_set1_ps(fp16(x[i].d)));
}

// ---- the table ----

// vec_dot only where the table pairs the type with Q8_0 (as kernels-ref.c does)
static void set(qt_kernel_traits *t, qt_type type, qt_vec_dot_fn vec_dot, qt_to_float_fn to_float) {
    if (t[type].vec_dot_type == QT_TYPE_Q8_0) t[type].vec_dot = vec_dot;
    t[type].to_float = to_float;
}

void qt_legacy_set_avx2(qt_kernel_traits *t) {
    set(t, QT_TYPE_Q4_1, vec_dot_q4_1_avx2, to_float_q4_1_avx2);
    set(t, QT_TYPE_Q5_0, vec_dot_q5_0_avx2, to_float_q5_0_avx2);
    set(t, QT_TYPE_Q5_1, vec_dot_q5_1_avx2, to_float_q5_1_avx2);
    set(t, QT_TYPE_IQ4_NL, vec_dot_iq4_nl_avx2, to_float_iq4_nl_avx2);
}

void qt_legacy_set_products_x86(qt_kernel_traits *t, const qt_gemm_fn gemm[4], const qt_gemv_fn gemv[4],
                                const qt_gemm_fn small[4], int small_max_t) {
    static const qt_type types[4] = {QT_TYPE_Q4_1, QT_TYPE_Q5_0, QT_TYPE_Q5_1, QT_TYPE_IQ4_NL};
    for (int i = 0; i < 4; i++) {
        qt_kernel_traits *k = &t[types[i]];
        if (k->vec_dot_type != QT_TYPE_Q8_0) continue;   // the reference's pairing only
        k->gemm = gemm[i];
        k->gemv = gemv[i];
        k->gemm_small = small[i];
        k->small_max_t = small_max_t;
    }
}
