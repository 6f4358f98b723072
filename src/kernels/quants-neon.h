// quants-neon.h: NEON unpacking of the 32-element quant blocks, shared by the
// arm64 kernel files (kernels-neon.c, legacy-neon.c, gemm-neoni8mm.c): each
// block's 32 weights as two int8x16 (lo = elements 0..15, hi = 16..31).
// Layout (quant/blocks.h, GGML's ggml-common.h): qs[j] holds element j in its
// low nibble and element j + 16 in its high one; the fifth bit of element j is
// bit j of the little-endian u32 qh.
// Include only from files compiled for arm64 (arm_neon.h).
#ifndef QT_QUANTS_NEON_H
#define QT_QUANTS_NEON_H

#include <arm_neon.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/simd-neon.h"
#include "quant/blocks.h"
#include "quant/types.h"

static inline void nibbles(const uint8_t *qs, uint8x16_t *lo, uint8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(qs);
    *lo = vandq_u8(q, vdupq_n_u8(0xf));
    *hi = vshrq_n_u8(q, 4);
}

// the 32 bits of qh as bytes, 0xff where the bit is set (element j: bit j)
static inline void bits32(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t m = vld1q_u8(bit);
    *lo = vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), m);
    *hi = vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), m);
}

// Q4_0: the nibbles - 8, in [-8, 7]
static inline void unpack_q4_0(const block_q4_0 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(b->qs);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0xF))), vdupq_n_s8(8));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
}

static inline void unpack_q8_0(const block_q8_0 *b, int8x16_t *lo, int8x16_t *hi) {
    *lo = vld1q_s8(b->qs);
    *hi = vld1q_s8(b->qs + 16);
}

// IQ4_NL: Q4_0's layout with the nibbles mapped through its 16-entry code book
static inline void unpack_iq4_nl(const block_iq4_nl *b, int8x16_t *lo, int8x16_t *hi) {
    const int8x16_t kv = vld1q_s8(qt_kvalues_iq4nl);
    const uint8x16_t q = vld1q_u8(b->qs);
    *lo = vqtbl1q_s8(kv, vandq_u8(q, vdupq_n_u8(0xF)));
    *hi = vqtbl1q_s8(kv, vshrq_n_u8(q, 4));
}

// Q4_1: the nibbles, unsigned (x = d q + m)
static inline void q4_1_u(const block_q4_1 *b, uint8x16_t *lo, uint8x16_t *hi) { nibbles(b->qs, lo, hi); }

// Q5_0: q - 16 as signed bytes: the nibble with 0xf0 or'ed in where the fifth bit is clear
static inline void q5_0_s(const block_q5_0 *b, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t l, h, bl, bh;
    nibbles(b->qs, &l, &h);
    bits32(b->qh, &bl, &bh);
    *lo = vreinterpretq_s8_u8(vorrq_u8(l, vbicq_u8(vdupq_n_u8(0xf0), bl)));
    *hi = vreinterpretq_s8_u8(vorrq_u8(h, vbicq_u8(vdupq_n_u8(0xf0), bh)));
}

// Q5_1: the 5-bit quants, unsigned (x = d q + m)
static inline void q5_1_u(const block_q5_1 *b, uint8x16_t *lo, uint8x16_t *hi) {
    uint8x16_t bl, bh;
    nibbles(b->qs, lo, hi);
    bits32(b->qh, &bl, &bh);
    *lo = vorrq_u8(*lo, vandq_u8(bl, vdupq_n_u8(0x10)));
    *hi = vorrq_u8(*hi, vandq_u8(bh, vdupq_n_u8(0x10)));
}

// The 32-element types that carry a min (x = d q + m: the product adds
// m d_y sum(y)).
static inline bool q32_affine(qt_type t) { return t == QT_TYPE_Q4_1 || t == QT_TYPE_Q5_1; }

// Block i of a row of type t: its 32 quants (unsigned ones, 0..31, as int8),
// its scale and (Q4_1/Q5_1) its min. t is a constant at every call site, so
// the switch folds away.
static inline __attribute__((always_inline)) void q32_unpack(qt_type t, const void *row, int i, int8x16_t *lo,
                                                             int8x16_t *hi, float *d, float *m) {
    uint8x16_t ul, uh;
    switch (t) {
    case QT_TYPE_Q4_0: {
        const block_q4_0 *b = (const block_q4_0 *)row + i;
        unpack_q4_0(b, lo, hi);
        *d = fp16_to_f32(b->d);
        return;
    }
    case QT_TYPE_Q8_0: {
        const block_q8_0 *b = (const block_q8_0 *)row + i;
        unpack_q8_0(b, lo, hi);
        *d = fp16_to_f32(b->d);
        return;
    }
    case QT_TYPE_IQ4_NL: {
        const block_iq4_nl *b = (const block_iq4_nl *)row + i;
        unpack_iq4_nl(b, lo, hi);
        *d = fp16_to_f32(b->d);
        return;
    }
    case QT_TYPE_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)row + i;
        q5_0_s(b, lo, hi);
        *d = fp16_to_f32(b->d);
        return;
    }
    case QT_TYPE_Q4_1: {
        const block_q4_1 *b = (const block_q4_1 *)row + i;
        q4_1_u(b, &ul, &uh);
        *d = fp16_to_f32(b->d);
        *m = fp16_to_f32(b->m);
        break;
    }
    default: {   // QT_TYPE_Q5_1
        const block_q5_1 *b = (const block_q5_1 *)row + i;
        q5_1_u(b, &ul, &uh);
        *d = fp16_to_f32(b->d);
        *m = fp16_to_f32(b->m);
        break;
    }
    }
    *lo = vreinterpretq_s8_u8(ul);
    *hi = vreinterpretq_s8_u8(uh);
}

// ---- k-quants (256-element super-blocks against Q8_K) ----

// 6-bit scale j and min j of a q4_K/q5_K super-block (12 packed bytes).
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// A Q4_K / Q5_K / Q6_K super-block as 16 groups of 16 quants (unsigned:
// Q4_K / Q5_K 0..31, Q6_K 0..63) with an integer scale sc[g] and offset
// weight mn[g] per group, so that against a Q8_K block y (quants q8, sums
// bsums per 16)
//     dot = d_y (d sum_g sc[g] (q_g . q8_g) - m sum_g mn[g] bsums[g]):
// Q4_K / Q5_K: sc, mn = the 6-bit scale and min of the group's 32-element
// sub-block, d, m = d, dmin; Q6_K: sc = mn = the group's int8 scale, m = 32 d
// (its quants' -32 offset).
typedef struct {
    int16_t sc[16], mn[16];
    float d, m;
} kq_scales;

static inline __attribute__((always_inline)) void kq_scales_of(qt_type t, const void *blk, kq_scales *s) {
    if (t == QT_TYPE_Q6_K) {
        const block_q6_K *b = blk;
        const int8x16_t v = vld1q_s8(b->scales);
        vst1q_s16(s->sc, vmovl_s8(vget_low_s8(v)));
        vst1q_s16(s->sc + 8, vmovl_high_s8(v));
        vst1q_s16(s->mn, vmovl_s8(vget_low_s8(v)));
        vst1q_s16(s->mn + 8, vmovl_high_s8(v));
        s->d = fp16_to_f32(b->d);
        s->m = 32.0f * s->d;
        return;
    }
    const uint8_t *scales = t == QT_TYPE_Q4_K ? ((const block_q4_K *)blk)->scales : ((const block_q5_K *)blk)->scales;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        scale_min_k4(j, scales, &sc, &mn);
        s->sc[2 * j] = s->sc[2 * j + 1] = sc;
        s->mn[2 * j] = s->mn[2 * j + 1] = mn;
    }
    if (t == QT_TYPE_Q4_K) {
        s->d = fp16_to_f32(((const block_q4_K *)blk)->d);
        s->m = fp16_to_f32(((const block_q4_K *)blk)->dmin);
    } else {
        s->d = fp16_to_f32(((const block_q5_K *)blk)->d);
        s->m = fp16_to_f32(((const block_q5_K *)blk)->dmin);
    }
}

// Chunk j (0..3) of a super-block: elements 64j .. 64j+63 as groups 4j .. 4j+3.
static inline __attribute__((always_inline)) void kq_chunk(qt_type t, const void *blk, int j, int8x16_t q[4]) {
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    uint8x16_t u[4];
    if (t == QT_TYPE_Q6_K) {
        // half h = j / 2 (64 ql bytes, 32 qh bytes); an even j takes the low
        // nibbles of ql and bits 0..3 of qh, an odd j the high nibbles and bits 4..7
        const block_q6_K *b = blk;
        const uint8_t *ql = b->ql + 64 * (j >> 1), *qh = b->qh + 32 * (j >> 1);
        const uint8x16_t m3 = vdupq_n_u8(3);
        const uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
        const uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16), l2 = vld1q_u8(ql + 32), l3 = vld1q_u8(ql + 48);
        if (!(j & 1)) {
            u[0] = vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h0, m3), 4));
            u[1] = vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(h1, m3), 4));
            u[2] = vorrq_u8(vandq_u8(l2, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h0, 2), m3), 4));
            u[3] = vorrq_u8(vandq_u8(l3, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h1, 2), m3), 4));
        } else {
            u[0] = vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h0, 4), m3), 4));
            u[1] = vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h1, 4), m3), 4));
            u[2] = vorrq_u8(vshrq_n_u8(l2, 4), vshlq_n_u8(vshrq_n_u8(h0, 6), 4));
            u[3] = vorrq_u8(vshrq_n_u8(l3, 4), vshlq_n_u8(vshrq_n_u8(h1, 6), 4));
        }
    } else {
        // 32 bytes of nibbles: low = sub-block 2j (groups 4j, 4j+1), high = 2j+1
        const uint8_t *qs = t == QT_TYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        const uint8x16_t a = vld1q_u8(qs + 32 * j), b = vld1q_u8(qs + 32 * j + 16);
        u[0] = vandq_u8(a, m4);
        u[1] = vandq_u8(b, m4);
        u[2] = vshrq_n_u8(a, 4);
        u[3] = vshrq_n_u8(b, 4);
        if (t == QT_TYPE_Q5_K) {
            // the fifth bit: bit 2j of qh[l] for element 64j + l, bit 2j+1 for 64j + 32 + l
            const block_q5_K *b5 = blk;
            const uint8x16_t qh0 = vld1q_u8(b5->qh), qh1 = vld1q_u8(b5->qh + 16), b16 = vdupq_n_u8(16);
            const uint8x16_t mlo = vdupq_n_u8((uint8_t)(1u << (2 * j))), mhi = vdupq_n_u8((uint8_t)(2u << (2 * j)));
            u[0] = vorrq_u8(u[0], vandq_u8(vtstq_u8(qh0, mlo), b16));
            u[1] = vorrq_u8(u[1], vandq_u8(vtstq_u8(qh1, mlo), b16));
            u[2] = vorrq_u8(u[2], vandq_u8(vtstq_u8(qh0, mhi), b16));
            u[3] = vorrq_u8(u[3], vandq_u8(vtstq_u8(qh1, mhi), b16));
        }
    }
    for (int k = 0; k < 4; k++) q[k] = vreinterpretq_s8_u8(u[k]);
}

// sum_g mn[g] bsums[g]: a super-block's offset term against a Q8_K block
static inline int32_t kq_offset(const kq_scales *s, const block_q8_K *y) {
    int32x4_t p = vmull_s16(vld1_s16(s->mn), vld1_s16(y->bsums));
    p = vmlal_high_s16(p, vld1q_s16(s->mn), vld1q_s16(y->bsums));
    p = vmlal_s16(p, vld1_s16(s->mn + 8), vld1_s16(y->bsums + 8));
    p = vmlal_high_s16(p, vld1q_s16(s->mn + 8), vld1q_s16(y->bsums + 8));
    return vaddvq_s32(p);
}

static inline size_t kq_block_size(qt_type t) {
    return t == QT_TYPE_Q4_K ? sizeof(block_q4_K) : t == QT_TYPE_Q5_K ? sizeof(block_q5_K) : sizeof(block_q6_K);
}

// d_y times a super-block's dot from its integer parts: isum = sum_g sc[g]
// (q_g . q8_g), off = sum_g mn[g] bsums[g] (kq_offset). Q6_K's offset is
// taken out in integers (its two terms nearly cancel).
static inline float kq_dot(qt_type t, const kq_scales *s, int32_t isum, int32_t off, float dy) {
    if (t == QT_TYPE_Q6_K) return dy * (s->d * (float)(isum - 32 * off));
    return dy * (s->d * (float)isum - s->m * (float)off);
}

#endif
