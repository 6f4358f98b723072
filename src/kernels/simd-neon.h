// simd-neon.h: the small NEON helpers the arm64 kernel files share
// (kernels-neon.c, legacy-neon.c).
#ifndef QT_SIMD_NEON_H
#define QT_SIMD_NEON_H

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float fp16_to_f32(uint16_t h) {
    __fp16 v;
    memcpy(&v, &h, sizeof(v));
    return (float)v;
}

// acc += dot of 16 int8 pairs, summed into the 4 int32 lanes (which lane gets
// which product differs between the two paths; callers only use the sum).
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

// The k rows i0 .. i0+k-1 of a matrix (base, stride) a tile reads; rows at n
// or past it are the last row again (computed, not stored: nothing is read
// out of range).
static inline __attribute__((always_inline)) void tile_rows(const void *base, size_t stride, int i0, int n, int k,
                                                            const char *out[]) {
    for (int i = 0; i < k; i++) out[i] = (const char *)base + (size_t)(i0 + i < n ? i0 + i : n - 1) * stride;
}

#endif
