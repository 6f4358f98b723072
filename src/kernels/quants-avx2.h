// quants-avx2.h: AVX2 unpacking of quant blocks shared by the x86 kernel
// files (kernels-avx2.c, gemv-avx2.c, legacy-avx2.c, and the AVX-512 VNNI gemm
// and GEMV).
// Include only from files compiled with AVX2 (or AVX-512) enabled.
#ifndef QT_QUANTS_AVX2_H
#define QT_QUANTS_AVX2_H

#include "kernels/simd-x86.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/types.h"

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

// the 12 packed 6-bit scale/min bytes of a Q4_K block as [sc0..7, mn0..7]
// (the kmask unpacking of ggml's q4_K, in vector lanes: bytes 0..3 of each
// half are direct, bytes 4..7 take low/high nibbles of bytes 8..11 and the
// top two bits of bytes 0..7)
static inline __attribute__((always_inline)) __m128i q4_K_scales(const char *blk) {
    // 16 bytes from the scales: the 12 scale bytes and 4 quant bytes (unused)
    __m128i v = _mm_loadu_si128((const __m128i *)(blk + offsetof(block_q4_K, scales)));
    __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m128i b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    __m128i lo = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    __m128i hn = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    __m128i hb = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    return _mm_or_si128(_mm_or_si128(lo, hn), hb);
}

// int16 lane i of v broadcast to all 16 lanes (v holds the same 8 int16 in both halves)
static inline __attribute__((always_inline)) __m256i bcast_i16(__m256i v, int i) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * i + 1) << 8) | (2 * i))));
}

// Q5_K's fifth bits of sub-block b: bit b of each qh byte as 16 (bit 4), all
// other bits clear. The 16-bit shifts move bits by at most 4, so bit 4 of a
// byte only ever receives a bit of the same byte.
static inline __attribute__((always_inline)) __m256i q5_K_bit4(__m256i qh, int b) {
    __m256i v = b <= 4 ? _mm256_slli_epi16(qh, 4 - b) : _mm256_srli_epi16(qh, b - 4);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

// The integer part of a Q5_K super-block's dot with a Q8_K row's quants q8:
// 8 int32 partial sums of scale * (5-bit quants . activations) over the 8
// sub-blocks; sc: the 8 scales as int16 in both 128-bit halves.
static inline __attribute__((always_inline)) __m256i q5_K_sumi(const char *blk, const int8_t *q8, __m256i sc) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const char *qs = blk + offsetof(block_q5_K, qs);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + offsetof(block_q5_K, qh)));
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), q5_K_bit4(qh, 2 * j));
        __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), q5_K_bit4(qh, 2 * j + 1));
        __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * j)));
        __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32)));
        pl = _mm256_madd_epi16(pl, bcast_i16(sc, 2 * j));
        ph = _mm256_madd_epi16(ph, bcast_i16(sc, 2 * j + 1));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    return sumi;
}

// ---- small helpers of the AVX2 vec_dots and dequantizers ----

static inline __attribute__((always_inline)) float fp16(uint16_t h) { return _cvtsh_ss(h); }

// 32 4-bit quants -> 32 bytes 0..15: low nibbles (elements 0..15) first, then high
static inline __attribute__((always_inline)) __m256i nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0xf));
}

// the sum of the 8 lanes
static inline __attribute__((always_inline)) float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum over 32 pairs of x*y as 8 int32 lanes, x and y signed bytes (x > -128)
static inline __attribute__((always_inline)) __m256i dot_i8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// the same for unsigned x (0..127) and signed y
static inline __attribute__((always_inline)) __m256i dot_u8(__m256i x, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

// y[0..31] = q * d, q signed bytes
static inline __attribute__((always_inline)) void store_i8_scaled(float *y, __m256i q, __m256 d) {
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm256_castsi256_si128(q))), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(_mm256_castsi256_si128(q), 8))), d));
    __m128i h = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h)), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(h, 8))), d));
}

// y[0..31] = q * d + m, q unsigned bytes: mul then add, as the references
// (no fma; the k-quants' d q - min is q d + (-min), the same bits)
static inline __attribute__((always_inline)) void store_u8_affine(float *y, __m256i q, __m256 d, __m256 m) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(f, d), m));
    }
}

// ---- the legacy 32-element types' blocks as 32 bytes (element order) ----
// (legacy-avx2.c's vec_dots and dequantizers, the AVX-512 VNNI gemm and gemv)

// the 32 bits of qh as 32 bytes, 0xff where the bit is set (byte j: bit j)
static inline __attribute__((always_inline)) __m256i bits32(const uint8_t *qh) {
    uint32_t v;
    memcpy(&v, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));   // all bits but bit j % 8
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

static inline __attribute__((always_inline)) __m256i q4_1_u(const block_q4_1 *b) { return nibbles(b->qs); }

// q - 16 as signed bytes: the nibble with 0xf0 or'ed in where the fifth bit is clear
static inline __attribute__((always_inline)) __m256i q5_0_s(const block_q5_0 *b) {
    return _mm256_or_si256(nibbles(b->qs), _mm256_andnot_si256(bits32(b->qh), _mm256_set1_epi8((char)0xf0)));
}

// the 5-bit quants 0..31 from 16 nibble bytes and the 4 fifth-bit bytes
static inline __attribute__((always_inline)) __m256i q5_u(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(nibbles(qs), _mm256_and_si256(bits32(qh), _mm256_set1_epi8(0x10)));
}

static inline __attribute__((always_inline)) __m256i q5_1_u(const block_q5_1 *b) { return q5_u(b->qs, b->qh); }

// kv: the code book in both 128-bit lanes
static inline __attribute__((always_inline)) __m256i iq4_nl_s(const block_iq4_nl *b, __m256i kv) {
    return _mm256_shuffle_epi8(kv, nibbles(b->qs));
}

static inline __attribute__((always_inline)) __m256i iq4_nl_book(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qt_kvalues_iq4nl));
}

// ---- any 32-element type (Q4_0, Q8_0 and the legacy ones) ----

// Q4_0's 32 quants - 8 as signed bytes
static inline __attribute__((always_inline)) __m256i q4_0_s(const uint8_t *qs) {
    return _mm256_sub_epi8(nibbles(qs), _mm256_set1_epi8(8));
}

static inline size_t q32_block_size(qt_type wt) {
    switch (wt) {
    case QT_TYPE_Q4_0: return sizeof(block_q4_0);
    case QT_TYPE_Q8_0: return sizeof(block_q8_0);
    case QT_TYPE_Q4_1: return sizeof(block_q4_1);
    case QT_TYPE_Q5_0: return sizeof(block_q5_0);
    case QT_TYPE_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_iq4_nl);
    }
}

// x = d q + m (a min at byte offset 2) rather than x = d q
static inline bool q32_affine(qt_type wt) { return wt == QT_TYPE_Q4_1 || wt == QT_TYPE_Q5_1; }

// block b's scale (fp16 at offset 0 of every type) and, for Q4_1 / Q5_1, its
// min (fp16 at offset 2; 0 for the others)
static inline __attribute__((always_inline)) void q32_scale_min(qt_type wt, const char *b, float *d, float *m) {
    uint16_t h[2] = {0, 0};
    memcpy(h, b, q32_affine(wt) ? 4 : 2);
    *d = fp16(h[0]);
    *m = q32_affine(wt) ? fp16(h[1]) : 0.0f;
}

// the 32 quants of block b as bytes, in element order (signed, > -128;
// Q4_1 / Q5_1's are 0..31); book: iq4_nl_book(); wt a constant after inlining
static inline __attribute__((always_inline)) __m256i q32_quants(qt_type wt, const char *b, __m256i book) {
    switch (wt) {
    case QT_TYPE_Q4_0: return q4_0_s(((const block_q4_0 *)b)->qs);
    case QT_TYPE_Q8_0: return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)b)->qs);
    case QT_TYPE_Q4_1: return q4_1_u((const block_q4_1 *)b);
    case QT_TYPE_Q5_0: return q5_0_s((const block_q5_0 *)b);
    case QT_TYPE_Q5_1: return q5_1_u((const block_q5_1 *)b);
    default: return iq4_nl_s((const block_iq4_nl *)b, book);
    }
}

#endif
