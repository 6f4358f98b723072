// simd-x86.h: the x86 intrinsics for the *-avx2.c and *-avx512*.c files.
// Normally the compiler's <immintrin.h> (each file built with its ISA flags);
// built with QT_SIMDE (make simde-test), SIMDe's portable implementations of
// the same intrinsics, so the AVX2 and AVX-512 code paths are tested against
// the scalar reference on machines without those instructions.
#ifndef QT_SIMD_X86_H
#define QT_SIMD_X86_H

#if defined(QT_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/types.h"

// What SIMDe 0.7 (Debian 12) lacks, written lane by lane on its types.
typedef simde__mmask16 __mmask16;
typedef simde__mmask64 __mmask64;
#define _cvtsh_ss(h) qt_fp16_to_fp32(h)
#ifndef _MM_FROUND_NO_EXC
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif
static inline simde__m512 qt_simde_maskz_loadu_ps(simde__mmask16 k, const void *p) {
    float v[16] = {0};
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) memcpy(&v[i], (const char *)p + 4 * i, 4);
    return simde_mm512_loadu_ps(v);
}
#define _mm512_maskz_loadu_ps(k, p) qt_simde_maskz_loadu_ps((k), (p))
#define _mm512_maskz_loadu_epi32(k, p) simde_mm512_castps_si512(qt_simde_maskz_loadu_ps((k), (p)))
// masked store of the lanes of width w bytes (4: epi32 / ps, 2: epi16) that k selects
static inline void qt_simde_mask_storeu(void *p, uint64_t k, simde__m512i a, int w) {
    unsigned char v[64];
    simde_mm512_storeu_si512(v, a);
    for (int i = 0; i < 64 / w; i++)
        if ((k >> i) & 1) memcpy((char *)p + w * i, v + w * i, (size_t)w);
}
#define _mm512_mask_storeu_epi32(p, k, a) qt_simde_mask_storeu((p), (k), (a), 4)
#define _mm512_mask_storeu_ps(p, k, a) qt_simde_mask_storeu((p), (k), simde_mm512_castps_si512(a), 4)
#define _mm512_mask_storeu_epi16(p, k, a) qt_simde_mask_storeu((p), (k), (a), 2)
static inline simde__mmask16 qt_simde_cmpgt_epu32_mask(simde__m512i a, simde__m512i b) {
    uint32_t x[16], y[16];
    simde_mm512_storeu_si512(x, a);
    simde_mm512_storeu_si512(y, b);
    simde__mmask16 k = 0;
    for (int i = 0; i < 16; i++) k |= (simde__mmask16)((x[i] > y[i]) << i);
    return k;
}
#define _mm512_cmpgt_epu32_mask(a, b) qt_simde_cmpgt_epu32_mask((a), (b))
static inline float qt_simde_reduce_add_ps(simde__m512 a) {
    float v[16];
    simde_mm512_storeu_ps(v, a);
    for (int w = 8; w >= 1; w /= 2)   // the pairwise tree of the native reduction
        for (int i = 0; i < w; i++) v[i] += v[i + w];
    return v[0];
}
#define _mm512_reduce_add_ps(a) qt_simde_reduce_add_ps(a)
static inline simde__m512 qt_simde_cvtepi32_ps(simde__m512i a) {
    int32_t x[16];
    float v[16];
    simde_mm512_storeu_si512(x, a);
    for (int i = 0; i < 16; i++) v[i] = (float)x[i];
    return simde_mm512_loadu_ps(v);
}
#define _mm512_cvtepi32_ps(a) qt_simde_cvtepi32_ps(a)
// a * 2^floor(b) correctly rounded, as vscalefps (SIMDe multiplies by
// exp2(floor(b)), which is inf or 0 where 2^b is no float: b = 128, -150)
static inline simde__m512 qt_simde_scalef_ps(simde__m512 a, simde__m512 b) {
    float x[16], e[16];
    simde_mm512_storeu_ps(x, a);
    simde_mm512_storeu_ps(e, b);
    for (int i = 0; i < 16; i++)
        x[i] = e[i] != e[i] ? e[i] : ldexpf(x[i], (int)floorf(e[i] < -400.0f ? -400.0f : e[i] > 400.0f ? 400.0f : e[i]));
    return simde_mm512_loadu_ps(x);
}
#define _mm512_scalef_ps(a, b) qt_simde_scalef_ps((a), (b))
static inline simde__m512 qt_simde_cvtph_ps(simde__m256i a) {
    float v[16];
    simde_mm256_storeu_ps(v, simde_mm256_cvtph_ps(simde_mm256_castsi256_si128(a)));
    simde_mm256_storeu_ps(v + 8, simde_mm256_cvtph_ps(simde_mm256_extracti128_si256(a, 1)));
    return simde_mm512_loadu_ps(v);
}
#define _mm512_cvtph_ps(a) qt_simde_cvtph_ps(a)
static inline simde__m512 qt_simde_movedup_ps(simde__m512 a, int odd) {
    float v[16];
    simde_mm512_storeu_ps(v, a);
    for (int i = 0; i < 16; i += 2) v[i] = v[i + 1 - !odd], v[i + 1] = v[i];
    return simde_mm512_loadu_ps(v);
}
static inline simde__m512i qt_simde_cvt8_epi32(simde__m128i a, int is_signed) {   // vpmovzxbd / vpmovsxbd
    uint8_t x[16];
    int32_t v[16];
    simde_mm_storeu_si128((simde__m128i *)x, a);
    for (int i = 0; i < 16; i++) v[i] = is_signed ? (int32_t)(int8_t)x[i] : (int32_t)x[i];
    return simde_mm512_loadu_si512(v);
}
#define _mm512_cvtepu8_epi32(a) qt_simde_cvt8_epi32((a), 0)
#define _mm512_cvtepi8_epi32(a) qt_simde_cvt8_epi32((a), 1)
static inline simde__m256i qt_simde_cvtepi32_epi16(simde__m512i a) {
    int32_t x[16];
    int16_t v[16];
    simde_mm512_storeu_si512(x, a);
    for (int i = 0; i < 16; i++) v[i] = (int16_t)x[i];
    return simde_mm256_loadu_si256((const simde__m256i *)v);
}
#define _mm512_cvtepi32_epi16(a) qt_simde_cvtepi32_epi16(a)
typedef simde__mmask32 __mmask32;
static inline simde__m512i qt_simde_maskz_loadu_epi16(simde__mmask32 k, const void *p) {
    uint16_t v[32] = {0};
    for (int i = 0; i < 32; i++)
        if ((k >> i) & 1) memcpy(&v[i], (const char *)p + 2 * i, 2);
    return simde_mm512_loadu_si512(v);
}
#define _mm512_maskz_loadu_epi16(k, p) qt_simde_maskz_loadu_epi16((k), (p))
static inline simde__m512d qt_simde_cvtps_pd(simde__m256 a) {
    float x[8];
    double v[8];
    simde_mm256_storeu_ps(x, a);
    for (int i = 0; i < 8; i++) v[i] = x[i];
    return simde_mm512_loadu_pd(v);
}
#define _mm512_cvtps_pd(a) qt_simde_cvtps_pd(a)
static inline simde__m512i qt_simde_cvtps_epi32(simde__m512 a) {   // the default rounding: nearest even
    float x[16];
    int32_t v[16];
    simde_mm512_storeu_ps(x, a);
    for (int i = 0; i < 16; i++) v[i] = (int32_t)nearbyintf(x[i]);
    return simde_mm512_loadu_si512(v);
}
#define _mm512_cvtps_epi32(a) qt_simde_cvtps_epi32(a)
static inline simde__m512i qt_simde_srai_epi32(simde__m512i a, int n) {   // arithmetic shift, as vpsrad
    int32_t v[16];
    simde_mm512_storeu_si512(v, a);
    for (int i = 0; i < 16; i++) v[i] = v[i] < 0 ? ~(~v[i] >> n) : v[i] >> n;
    return simde_mm512_loadu_si512(v);
}
#define _mm512_srai_epi32(a, n) qt_simde_srai_epi32((a), (n))
#define _mm512_moveldup_ps(a) qt_simde_movedup_ps((a), 0)
#define _mm512_movehdup_ps(a) qt_simde_movedup_ps((a), 1)
#else
#include <immintrin.h>
#endif

#if defined(QT_SIMDE) || defined(__AVX512BF16__)
#include <string.h>
// vdpbf16ps's operand type from a dword vector (a bit cast; SIMDe's types
// are not always GCC vectors, so through memcpy there)
static inline __attribute__((always_inline)) __m512bh qt_as_bh(__m512i v) {
#if defined(QT_SIMDE)
    __m512bh r;
    memcpy(&r, &v, sizeof(r));
    return r;
#else
    return (__m512bh)v;
#endif
}

// vcvtne2ps2bf16: 32 bf16 of the fp32 lanes lo (elements 0 .. 15) and hi
// (16 .. 31), in element order; nearest even, denormal inputs and results
// to zero, NaN quiet (SIMDe 0.7 lacks it: lane by lane there).
static inline __attribute__((always_inline)) __m512i qt_cvtne_bf16x32(__m512 lo, __m512 hi) {
#if defined(QT_SIMDE)
    float x[32];
    uint16_t v[32];
    _mm512_storeu_ps(x, lo);
    _mm512_storeu_ps(x + 16, hi);
    for (int i = 0; i < 32; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if ((u & 0x7f800000) == 0) u &= 0x80000000u;   // DAZ
        memcpy(&x[i], &u, 4);
        v[i] = qt_fp32_to_bf16(x[i]);
        if ((v[i] & 0x7f80) == 0) v[i] &= 0x8000;   // FTZ
    }
    return _mm512_loadu_si512(v);
#else
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
#endif
}
#endif

#endif
