// quants-avx2.h: AVX2 unpacking of quant blocks shared by the AVX2 kernel
// files (kernels-avx2.c, gemv-avx2.c). Include only from *-avx2.c files,
// which are compiled with AVX2 enabled.
#ifndef QT_QUANTS_AVX2_H
#define QT_QUANTS_AVX2_H

#include "kernels/simd-x86.h"
#include <stdint.h>

// One half (128 quants) of a Q6_K super-block, from its 64 ql bytes (low 4
// bits) and 32 qh bytes (high 2 bits): q[j] = the unsigned 6-bit quants
// 32j .. 32j+31 of the half (0..63; the -32 offset is the caller's).
// Layout as llama.cpp's block_q6_K / dequantize_row_q6_K.
static inline __attribute__((always_inline)) void q6_K_unpack_avx2(const uint8_t *ql, const uint8_t *qh,
                                                                    __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xf), m2 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m2));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m2));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m2));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m2));
}

#endif
