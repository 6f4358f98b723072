// types.c: the type traits table (names, block sizes, bytes per block, scalar
// reference conversions) and the scalar IEEE half <-> float conversions.
//
// Follows ggml.c `type_traits[]` and ggml.h `enum ggml_type` (llama.cpp/ggml):
// names are spelled as GGML spells them ("q4_K", "iq4_nl", "bf16"), block sizes
// and bytes match ggml-common.h. The i-quants other than iq4_nl (iq2_*, iq3_*,
// iq1_*, iq4_xs) and the integer/f64 types have sizes only, so a GGUF file that
// holds them can be described and rejected cleanly; ids ggml removed or that
// qt does not know (4, 5, 31..39) have no traits at all.
//
// fp16: exact IEEE binary16, round to nearest even, subnormals, inf and NaN
// (NaN stays NaN, quieted, top payload bits kept, as x86 F16C does).
#include "quant/types.h"

#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "quant/nf4.h"
#include "quant/quant.h"

const int8_t qt_kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

// ---- IEEE half <-> float ----

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float qt_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t em = h & 0x7fff;
    if (em >= 0x7c00) {                      // inf / NaN: keep the payload
        return f32_from_bits(sign | 0x7f800000 | ((em & 0x3ff) << 13));
    }
    if (em >= 0x0400) {                      // normal: rebias exponent 15 -> 127
        return f32_from_bits(sign | ((em << 13) + ((127 - 15) << 23)));
    }
    // zero or subnormal: em * 2^-24, exact in float
    return f32_from_bits(sign | f32_bits((float)em * 0x1p-24f));
}

uint16_t qt_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffff;
    if (x > 0x7f800000) {                    // NaN: quiet, keep top payload bits
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    }
    if (x >= 0x477ff000) {                   // >= 65520 rounds to inf (and inf itself)
        return (uint16_t)(sign | 0x7c00);
    }
    if (x >= 0x38800000) {                   // >= 2^-14: normal half
        uint32_t m = x - ((uint32_t)(127 - 15) << 23);
        m += 0xfff + ((m >> 13) & 1);        // round to nearest even at bit 13
        return (uint16_t)(sign | (m >> 13));
    }
    // below the smallest normal: half subnormal = round(v * 2^24)
    int e = (int)(x >> 23);
    if (e < 102) return sign;                // v < 2^-25: rounds to zero
    uint32_t mant = (x & 0x7fffff) | 0x800000;   // v = mant * 2^(e - 150)
    int shift = 126 - e;                     // 14..24
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);             // r == 0x400 is the smallest normal, correctly encoded
}

// ---- plain-type row conversions ----

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_fp16_to_fp32(s[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = qt_fp32_to_fp16(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_bf16_to_fp32(s[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = qt_fp32_to_bf16(src[i]);
}

// Adapters from the typed quant.h functions to the void* traits signatures.
#define QT_TO_FLOAT(name, block)                                             \
    static void name##_to_float(const void *src, float *dst, int64_t n) {    \
        qt_dequantize_row_##name((const block *)src, dst, n);                \
    }
#define QT_FROM_FLOAT(name, block)                                           \
    static void name##_from_float(const float *src, void *dst, int64_t n) {  \
        qt_quantize_row_##name##_ref(src, (block *)dst, n);                  \
    }
QT_TO_FLOAT(q4_0, block_q4_0)     QT_FROM_FLOAT(q4_0, block_q4_0)
QT_TO_FLOAT(q4_1, block_q4_1)     QT_FROM_FLOAT(q4_1, block_q4_1)
QT_TO_FLOAT(q5_0, block_q5_0)     QT_FROM_FLOAT(q5_0, block_q5_0)
QT_TO_FLOAT(q5_1, block_q5_1)     QT_FROM_FLOAT(q5_1, block_q5_1)
QT_TO_FLOAT(q8_0, block_q8_0)     QT_FROM_FLOAT(q8_0, block_q8_0)
                                  QT_FROM_FLOAT(q8_1, block_q8_1)
QT_TO_FLOAT(q2_K, block_q2_K)     QT_FROM_FLOAT(q2_K, block_q2_K)
QT_TO_FLOAT(q3_K, block_q3_K)     QT_FROM_FLOAT(q3_K, block_q3_K)
QT_TO_FLOAT(q4_K, block_q4_K)     QT_FROM_FLOAT(q4_K, block_q4_K)
QT_TO_FLOAT(q5_K, block_q5_K)     QT_FROM_FLOAT(q5_K, block_q5_K)
QT_TO_FLOAT(q6_K, block_q6_K)     QT_FROM_FLOAT(q6_K, block_q6_K)
QT_TO_FLOAT(q8_K, block_q8_K)     QT_FROM_FLOAT(q8_K, block_q8_K)
QT_TO_FLOAT(iq4_nl, block_iq4_nl) QT_FROM_FLOAT(iq4_nl, block_iq4_nl)
QT_TO_FLOAT(nf4, block_nf4)       QT_FROM_FLOAT(nf4, block_nf4)
#undef QT_TO_FLOAT
#undef QT_FROM_FLOAT

// ---- the table ----

#define PLAIN(nm, sz) { .name = nm, .blck_size = 1, .type_size = sz, .is_quantized = false }
#define QUANT(nm, blk, sz, tf, ff) \
    { .name = nm, .blck_size = blk, .type_size = sz, .is_quantized = true, .to_float = tf, .from_float_ref = ff }

static const qt_type_traits g_traits[QT_TYPE_COUNT] = {
    [QT_TYPE_F32] = { .name = "f32", .blck_size = 1, .type_size = 4, .is_quantized = false,
                      .to_float = f32_to_float, .from_float_ref = f32_from_float },
    [QT_TYPE_F16] = { .name = "f16", .blck_size = 1, .type_size = 2, .is_quantized = false,
                      .to_float = f16_to_float, .from_float_ref = f16_from_float },
    [QT_TYPE_BF16] = { .name = "bf16", .blck_size = 1, .type_size = 2, .is_quantized = false,
                       .to_float = bf16_to_float, .from_float_ref = bf16_from_float },
    [QT_TYPE_Q4_0] = QUANT("q4_0", QK4_0, sizeof(block_q4_0), q4_0_to_float, q4_0_from_float),
    [QT_TYPE_Q4_1] = QUANT("q4_1", QK4_1, sizeof(block_q4_1), q4_1_to_float, q4_1_from_float),
    [QT_TYPE_Q5_0] = QUANT("q5_0", QK5_0, sizeof(block_q5_0), q5_0_to_float, q5_0_from_float),
    [QT_TYPE_Q5_1] = QUANT("q5_1", QK5_1, sizeof(block_q5_1), q5_1_to_float, q5_1_from_float),
    [QT_TYPE_Q8_0] = QUANT("q8_0", QK8_0, sizeof(block_q8_0), q8_0_to_float, q8_0_from_float),
    [QT_TYPE_Q8_1] = QUANT("q8_1", QK8_1, sizeof(block_q8_1), NULL, q8_1_from_float),
    [QT_TYPE_Q2_K] = QUANT("q2_K", QK_K, sizeof(block_q2_K), q2_K_to_float, q2_K_from_float),
    [QT_TYPE_Q3_K] = QUANT("q3_K", QK_K, sizeof(block_q3_K), q3_K_to_float, q3_K_from_float),
    [QT_TYPE_Q4_K] = QUANT("q4_K", QK_K, sizeof(block_q4_K), q4_K_to_float, q4_K_from_float),
    [QT_TYPE_Q5_K] = QUANT("q5_K", QK_K, sizeof(block_q5_K), q5_K_to_float, q5_K_from_float),
    [QT_TYPE_Q6_K] = QUANT("q6_K", QK_K, sizeof(block_q6_K), q6_K_to_float, q6_K_from_float),
    [QT_TYPE_Q8_K] = QUANT("q8_K", QK_K, sizeof(block_q8_K), q8_K_to_float, q8_K_from_float),
    [QT_TYPE_IQ4_NL] = QUANT("iq4_nl", QK4_NL, sizeof(block_iq4_nl), iq4_nl_to_float, iq4_nl_from_float),
    [QT_TYPE_NF4] = QUANT("nf4", QK_NF4, sizeof(block_nf4), nf4_to_float, nf4_from_float),   // qtune's own
    // sizes only (ggml-common.h static_asserts), no conversions in qt
    [QT_TYPE_IQ2_XXS] = QUANT("iq2_xxs", QK_K, 2 + QK_K / 8 * 2, NULL, NULL),
    [QT_TYPE_IQ2_XS] = QUANT("iq2_xs", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32, NULL, NULL),
    [QT_TYPE_IQ3_XXS] = QUANT("iq3_xxs", QK_K, 2 + 3 * (QK_K / 8), NULL, NULL),
    [QT_TYPE_IQ1_S] = QUANT("iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16, NULL, NULL),
    [QT_TYPE_IQ3_S] = QUANT("iq3_s", QK_K, 2 + 13 * (QK_K / 32) + QK_K / 64, NULL, NULL),
    [QT_TYPE_IQ2_S] = QUANT("iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16, NULL, NULL),
    [QT_TYPE_IQ4_XS] = QUANT("iq4_xs", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2, NULL, NULL),
    [QT_TYPE_IQ1_M] = QUANT("iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, NULL, NULL),
    [QT_TYPE_I8] = PLAIN("i8", 1),
    [QT_TYPE_I16] = PLAIN("i16", 2),
    [QT_TYPE_I32] = PLAIN("i32", 4),
    [QT_TYPE_I64] = PLAIN("i64", 8),
    [QT_TYPE_F64] = PLAIN("f64", 8),
};
#undef PLAIN
#undef QUANT

const qt_type_traits *qt_type_traits_get(int type) {
    if (type < 0 || type >= QT_TYPE_COUNT) return NULL;
    const qt_type_traits *t = &g_traits[type];
    return t->name ? t : NULL;
}

const char *qt_type_name(int type) {
    const qt_type_traits *t = qt_type_traits_get(type);
    return t ? t->name : "?";
}

int qt_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < QT_TYPE_COUNT; i++) {
        if (g_traits[i].name && strcasecmp(g_traits[i].name, name) == 0) return i;
    }
    return -1;
}

size_t qt_row_size(qt_type type, int64_t n) {
    const qt_type_traits *t = qt_type_traits_get((int)type);
    QT_ASSERT(t != NULL);
    QT_ASSERT(n >= 0 && n % t->blck_size == 0);
    return t->type_size * (size_t)(n / t->blck_size);
}
