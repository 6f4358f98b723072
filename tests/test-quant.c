// test-quant.c: the type table, fp16/bf16 conversions and the scalar
// reference (de)quantizers of src/quant.
//
// Oracles, none of them the code under test:
//   (a) blocks packed by hand, element by element, from the layouts in
//       ggml-common.h ("element i of q4_K lives in byte X, bits Y, sub-block Z")
//       and decoded values computed in double from the same definition;
//   (b) round-trip error bounds per type on Gaussian and structured data;
//   (c) exhaustive fp16 / bf16 checks against an ldexp formula and the exact
//       round-to-nearest-even midpoints (and GCC's _Float16 where it exists);
//   (d) sizes and names as llama.cpp's ggml.c type_traits lists them;
//   (e) tests/data/quant-ggml.bin: bytes written by ggml's own reference
//       quantizers and dequantizers (ggml-org/ggml d99724f, quantize_row_*_ref,
//       quantize_iq4_nl without imatrix, dequantize_row_*) for the input
//       fixture_input() below; our output must match them byte for byte.
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "quant/quant.h"
#include "quant/types.h"
#include "test.h"

// Hand-packed blocks decode within a few float roundings of the double
// reference (the dequantizers round d*sc and d*sc*q to float).
#define DEQUANT_REL_TOL 4e-7

// Round-trip RMSE / RMS(signal) bounds on Gaussian and structured data.
// Theory: uniform rounding error, step / sqrt(12), with step = amax / 127 for
// q8_0 (amax of 32 normals ~ 2.1 sigma: 0.0047), amax / 32 for q6_K (16
// normals, ~1.8 sigma: 0.016), amax / 8 for q4_0 (0.075), range / 3 for q2_K
// (0.34 before the scale search). Measured worst case over the inputs below in
// brackets (identical to ggml's, which we match byte for byte); bounds are
// that plus ~15-20%, so a real regression fails while rounding noise does not.
#define RT_TOL_Q8_0   0.0065  // [0.0055]
#define RT_TOL_Q8_K   0.0085  // [0.0070] float scale, one per 256
#define RT_TOL_Q6_K   0.024   // [0.0175 at sigma 1, 0.0205 at 1e-3: fp16 d near subnormal]
#define RT_TOL_Q5_0   0.050   // [0.043]
#define RT_TOL_Q5_1   0.045   // [0.038]
#define RT_TOL_Q5_K   0.044   // [0.037]
#define RT_TOL_Q4_0   0.100   // [0.087]
#define RT_TOL_Q4_1   0.092   // [0.079]
#define RT_TOL_Q4_K   0.085   // [0.072]
#define RT_TOL_IQ4_NL 0.090   // [0.077]
#define RT_TOL_Q3_K   0.180   // [0.154]
#define RT_TOL_Q2_K   0.340   // [0.298]
// Inputs of magnitude ~1e-6: the fp16 block scales underflow to zero or
// subnormals, so most types decode (nearly) all zeros: error <= the signal.
#define RT_TOL_TINY   1.01
// q4_K / q5_K there: d underflows to 0 while dmin rounds UP to the smallest
// subnormal, so the outputs become -dmin * m, ~3x the signal (ggml does the
// same; our bytes are identical). Bounded so that NaN or blow-ups still fail.
#define RT_TOL_TINY_KMIN 3.5

// ---------------------------------------------------------------------------
// (d) table sanity

typedef struct { int type; const char *name; int blck; size_t size; } type_row;

// From ggml.c type_traits[] and ggml-common.h static_asserts (llama.cpp).
static const type_row expected_types[] = {
    {0, "f32", 1, 4},         {1, "f16", 1, 2},         {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},      {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},      {10, "q2_K", 256, 84},
    {11, "q3_K", 256, 110},   {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},   {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74},  {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},  {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},        {27, "i64", 1, 8},        {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},   {30, "bf16", 1, 2},
    {64, "nf4", 64, 36},      // qtune's own (quant/nf4.h; tests/test-nf4.c)
};

// Types that must have both conversions (q8_1: from_float only).
static const int convertible[] = {
    QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16, QT_TYPE_Q4_0, QT_TYPE_Q4_1, QT_TYPE_Q5_0,
    QT_TYPE_Q5_1, QT_TYPE_Q8_0, QT_TYPE_Q2_K, QT_TYPE_Q3_K, QT_TYPE_Q4_K, QT_TYPE_Q5_K,
    QT_TYPE_Q6_K, QT_TYPE_Q8_K, QT_TYPE_IQ4_NL,
};

static void test_table(void) {
    int n_known = 0;
    for (size_t i = 0; i < QT_ARRAY_LEN(expected_types); i++) {
        const type_row *e = &expected_types[i];
        const qt_type_traits *t = qt_type_traits_get(e->type);
        CHECK(t != NULL, "type %d (%s) has no traits", e->type, e->name);
        if (!t) continue;
        n_known++;
        CHECK(strcmp(t->name, e->name) == 0, "type %d: name %s, want %s", e->type, t->name, e->name);
        CHECK(t->blck_size == e->blck, "%s: blck %d, want %d", e->name, t->blck_size, e->blck);
        CHECK(t->type_size == e->size, "%s: size %zu, want %zu", e->name, t->type_size, e->size);
        CHECK(t->is_quantized == (e->blck > 1), "%s: is_quantized", e->name);
        CHECK(strcmp(qt_type_name(e->type), e->name) == 0, "qt_type_name(%d)", e->type);
        CHECK(qt_type_from_name(e->name) == e->type, "from_name(%s)", e->name);
        CHECK(qt_row_size(e->type, 4096) == e->size * (size_t)(4096 / e->blck), "%s: row size", e->name);
    }
    int n_table = 0;
    for (int ty = -3; ty < 300; ty++) n_table += qt_type_traits_get(ty) != NULL;
    CHECK(n_table == n_known, "%d types have traits, want exactly %d", n_table, n_known);
    const int unassigned[] = { -1, 4, 5, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 1000 };
    for (size_t i = 0; i < QT_ARRAY_LEN(unassigned); i++) {
        CHECK(qt_type_traits_get(unassigned[i]) == NULL, "type %d should be unknown", unassigned[i]);
        CHECK(strcmp(qt_type_name(unassigned[i]), "?") == 0, "name of %d", unassigned[i]);
    }
    CHECK(qt_type_from_name("Q4_K") == QT_TYPE_Q4_K, "case-insensitive Q4_K");
    CHECK(qt_type_from_name("IQ4_NL") == QT_TYPE_IQ4_NL, "case-insensitive IQ4_NL");
    CHECK(qt_type_from_name("BF16") == QT_TYPE_BF16, "BF16");
    CHECK(qt_type_from_name("q4_2") == -1, "q4_2 unknown");
    CHECK(qt_type_from_name("") == -1, "empty name");
    CHECK(qt_type_from_name(NULL) == -1, "NULL name");
    CHECK(qt_row_size(QT_TYPE_Q4_K, 0) == 0, "empty row");
    CHECK(qt_row_size(QT_TYPE_Q6_K, 11008) == 43 * 210, "q6_K 11008 row");
    for (size_t i = 0; i < QT_ARRAY_LEN(convertible); i++) {
        const qt_type_traits *t = qt_type_traits_get(convertible[i]);
        CHECK(t && t->to_float && t->from_float_ref, "type %d lacks conversions", convertible[i]);
    }
    const qt_type_traits *q81 = qt_type_traits_get(QT_TYPE_Q8_1);
    CHECK(q81 && q81->from_float_ref, "q8_1 from_float");
    static const int8_t kv[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
    CHECK(memcmp(kv, qt_kvalues_iq4nl, 16) == 0, "iq4_nl table differs from ggml-common.h");
}

// ---------------------------------------------------------------------------
// (c) fp16 / bf16

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// binary16 by definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m when e == 0
static double fp16_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_fp16(void) {
    int n_bad_decode = 0, n_bad_rt = 0, n_bad_round = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        double want = fp16_value((uint16_t)h);
        float got = qt_fp16_to_fp32((uint16_t)h);
        if (isnan(want)) {
            if (!isnan(got)) n_bad_decode++;
            // NaN stays NaN with the same sign through fp32 and back
            uint16_t back = qt_fp32_to_fp16(got);
            if (((back >> 10) & 31) != 31 || !(back & 1023) || (back & 0x8000) != (h & 0x8000)) n_bad_rt++;
            continue;
        }
        if ((double)got != want || !!signbit(got) != (int)(h >> 15)) n_bad_decode++;
        if (qt_fp32_to_fp16(got) != h) n_bad_rt++;
        // rounding between h and its successor (positive finite, below the max)
        if (h < 0x7bff) {
            double next = fp16_value((uint16_t)(h + 1));
            float mid = (float)((want + next) / 2);   // exact: 12 significant bits
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (qt_fp32_to_fp16(mid) != even) n_bad_round++;
            if (qt_fp32_to_fp16(nextafterf(mid, 0.0f)) != h) n_bad_round++;
            if (qt_fp32_to_fp16(nextafterf(mid, INFINITY)) != h + 1) n_bad_round++;
            if (qt_fp32_to_fp16(-mid) != (even | 0x8000)) n_bad_round++;
        }
    }
    CHECK(n_bad_decode == 0, "%d fp16 values decode wrongly", n_bad_decode);
    CHECK(n_bad_rt == 0, "%d fp16 values do not round-trip", n_bad_rt);
    CHECK(n_bad_round == 0, "%d fp16 midpoints round wrongly", n_bad_round);

    // chosen values
    CHECK(qt_fp32_to_fp16(65504.0f) == 0x7bff, "max half");
    CHECK(qt_fp32_to_fp16(65519.99f) == 0x7bff, "just below the overflow midpoint");
    CHECK(qt_fp32_to_fp16(65520.0f) == 0x7c00, "overflow midpoint rounds to inf (even)");
    CHECK(qt_fp32_to_fp16(1e10f) == 0x7c00, "large -> inf");
    CHECK(qt_fp32_to_fp16(-INFINITY) == 0xfc00, "-inf");
    CHECK(qt_fp32_to_fp16(0x1p-24f) == 0x0001, "smallest subnormal");
    CHECK(qt_fp32_to_fp16(0x1p-25f) == 0x0000, "half the smallest subnormal ties to 0");
    CHECK(qt_fp32_to_fp16(nextafterf(0x1p-25f, 1.0f)) == 0x0001, "just above 2^-25 -> 1");
    CHECK(qt_fp32_to_fp16(0x1.8p-24f) == 0x0002, "1.5 * 2^-24 ties to even 2");
    CHECK(qt_fp32_to_fp16(0x1p-14f) == 0x0400, "smallest normal");
    CHECK(qt_fp32_to_fp16(0x1.ff8p-15f) == 0x03ff, "largest subnormal");
    CHECK(qt_fp32_to_fp16(0x1.ffcp-15f) == 0x0400, "largest subnormal + half ulp ties to the normal (even)");
    CHECK(qt_fp32_to_fp16(0x1.ffbp-15f) == 0x03ff, "just below that midpoint");
    CHECK(qt_fp32_to_fp16(1e-30f) == 0x0000, "tiny -> 0");
    CHECK(qt_fp32_to_fp16(-0.0f) == 0x8000, "-0");
    CHECK(qt_fp32_to_fp16(1.0f) == 0x3c00, "1");
    CHECK(qt_fp32_to_fp16(0.1f) == 0x2e66, "0.1");
    CHECK(qt_fp32_to_fp16(-2.5f) == 0xc100, "-2.5");
    CHECK(qt_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00, "1 + half ulp ties to even 1");
    CHECK(qt_fp32_to_fp16(1.0f + 0x1.8p-10f) == 0x3c02, "1 + 1.5 ulp ties to even");
    uint16_t hn = qt_fp32_to_fp16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), "NaN -> NaN (%04x)", hn);
    CHECK((qt_fp32_to_fp16(bitsf(0x7f800001)) & 0x7fff) > 0x7c00, "signalling NaN stays NaN");

#ifdef __FLT16_MAX__
    // independent oracle: the compiler's own float -> _Float16 conversion
    qt_rng rng;
    qt_rng_seed(&rng, 7);
    int n_bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)qt_rng_u64(&rng);
        if (i & 1) u = (u & 0x80000000u) | (0x33000000u + u % (0x47800000u - 0x33000000u));  // the fp16 range
        float f = bitsf(u);
        if (isnan(f)) continue;
        _Float16 c = (_Float16)f;
        uint16_t want;
        memcpy(&want, &c, 2);
        if (qt_fp32_to_fp16(f) != want) {
            if (n_bad++ < 3) fprintf(stderr, "fp16(%a): %04x, _Float16 %04x\n", (double)f, qt_fp32_to_fp16(f), want);
        }
    }
    CHECK(n_bad == 0, "%d conversions differ from _Float16", n_bad);
#endif
}

static void test_bf16(void) {
    int n_bad = 0, n_round = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qt_bf16_to_fp32((uint16_t)h);
        if (fbits(f) != h << 16) n_bad++;
        uint16_t back = qt_fp32_to_bf16(f);
        if (isnan(f)) {
            if (!isnan(qt_bf16_to_fp32(back))) n_bad++;
            continue;
        }
        if (back != h) n_bad++;
        // midpoint to the next value (finite, below inf)
        if ((h & 0x7fff) < 0x7f7f) {
            uint32_t mid = (h << 16) | 0x8000;
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (qt_fp32_to_bf16(bitsf(mid)) != even) n_round++;
            if (qt_fp32_to_bf16(bitsf(mid - 1)) != h) n_round++;
            if (qt_fp32_to_bf16(bitsf(mid + 1)) != h + 1) n_round++;
        }
    }
    CHECK(n_bad == 0, "%d bf16 values do not round-trip", n_bad);
    CHECK(n_round == 0, "%d bf16 midpoints round wrongly", n_round);
    CHECK(qt_fp32_to_bf16(1.0f) == 0x3f80, "bf16 1");
    CHECK(qt_fp32_to_bf16(3.4e38f) == 0x7f80, "bf16 overflow -> inf");
    CHECK(isnan(qt_bf16_to_fp32(qt_fp32_to_bf16(bitsf(0x7f800001)))), "bf16 sNaN stays NaN");
}

// ---------------------------------------------------------------------------
// (a) hand-packed blocks

// One piece of an element's code: `width` bits at byte `off` of the block,
// starting at bit `shift`. Pieces are listed from the code's low bits up.
typedef struct { int off, shift, width; } piece;

static void put(uint8_t *blk, piece p, unsigned v) {
    unsigned mask = (1u << p.width) - 1;
    blk[p.off] = (uint8_t)((blk[p.off] & ~(mask << p.shift)) | ((v & mask) << p.shift));
}
// Writes `code` into its pieces, low bits first.
static void put_code(uint8_t *blk, const piece *ps, int n, unsigned code) {
    for (int i = 0; i < n; i++) {
        put(blk, ps[i], code);
        code >>= ps[i].width;
    }
}
static void put_f16(uint8_t *blk, size_t off, uint16_t h) { memcpy(blk + off, &h, 2); }

#define PIECE(type, field, idx, sh, w) ((piece){ (int)offsetof(type, field) + (idx), (sh), (w) })

// Where each element's code lives (ggml-common.h layouts, per element).
static int loc_nibble32(size_t qs, int i, piece *p) {   // q4_0, q4_1, iq4_nl: x[i] and x[i+16] share byte i
    p[0] = (piece){ (int)qs + i % 16, 4 * (i / 16), 4 };
    return 1;
}
static int loc_q5(size_t qs, size_t qh, int i, piece *p) {   // + 5th bit: bit i of the little-endian u32 qh
    loc_nibble32(qs, i, p);
    p[1] = (piece){ (int)qh + i / 8, i % 8, 1 };
    return 2;
}
static int loc_2bit_k(size_t qs, int i, piece *p) {  // q2_K, q3_K: 128-halves, byte l holds l, l+32, l+64, l+96
    int h = i / 128, r = i % 128;
    p[0] = (piece){ (int)qs + 32 * h + r % 32, 2 * (r / 32), 2 };
    return 1;
}
static int loc_4bit_k(size_t qs, int i, piece *p) {  // q4_K, q5_K: 64-chunks, byte l holds l (low), l+32 (high)
    int c = i / 64, r = i % 64;
    p[0] = (piece){ (int)qs + 32 * c + r % 32, 4 * (r / 32), 4 };
    return 1;
}

// 6-bit scale and min j of q4_K / q5_K (12-byte field at `sc`)
static void put_k4_scale_min(uint8_t *blk, size_t sc, int j, unsigned s, unsigned m) {
    if (j < 4) {
        put(blk, (piece){ (int)sc + j, 0, 6 }, s);
        put(blk, (piece){ (int)sc + j + 4, 0, 6 }, m);
    } else {
        piece ps[2] = { { (int)sc + j + 4, 0, 4 }, { (int)sc + j - 4, 6, 2 } };
        piece pm[2] = { { (int)sc + j + 4, 4, 4 }, { (int)sc + j, 6, 2 } };
        put_code(blk, ps, 2, s);
        put_code(blk, pm, 2, m);
    }
}

static qt_rng g_rng;
static unsigned rnd(unsigned n) { return (unsigned)(qt_rng_u64(&g_rng) % n); }
// a random fp16 scale of magnitude ~[2^-10, 2^2), either sign when `sign`
static uint16_t rnd_f16(int sign) {
    float v = ldexpf(1.0f + qt_rng_f32(&g_rng), (int)rnd(12) - 10);
    if (sign && rnd(2)) v = -v;
    return qt_fp32_to_fp16(v);
}
static double F(uint16_t h) { return fp16_value(h); }

// Compares a dequantized block against the expected values.
static void check_block(const char *name, int trial, const float *got, const double *want, int n) {
    double amax = 0, worst = 0;
    int iworst = 0;
    for (int i = 0; i < n; i++) amax = fmax(amax, fabs(want[i]));
    for (int i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (e > worst || isnan(got[i])) { worst = isnan(got[i]) ? INFINITY : e; iworst = i; }
    }
    CHECK(worst <= DEQUANT_REL_TOL * amax, "%s trial %d: element %d = %.9g, want %.9g (worst |diff| %.3g)",
          name, trial, iworst, got[iworst], want[iworst], worst);
}

#define N_TRIALS 50

static void test_dequant_layouts(void) {
    static const int8_t kv[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
    qt_rng_seed(&g_rng, 1234);
    float got[QK_K];
    double want[QK_K];
    piece p[2];
    for (int t = 0; t < N_TRIALS; t++) {
        {   // q4_0: x = (q - 8) * d
            block_q4_0 b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_q4_0, d), d);
            for (int i = 0; i < 32; i++) {
                unsigned q = rnd(16);
                loc_nibble32(offsetof(block_q4_0, qs), i, p); put_code(u, p, 1, q);
                want[i] = ((int)q - 8) * F(d);
            }
            qt_dequantize_row_q4_0(&b, got, 32); check_block("q4_0", t, got, want, 32);
        }
        {   // q4_1: x = q * d + m
            block_q4_1 b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(0), m = rnd_f16(1);
            put_f16(u, offsetof(block_q4_1, d), d); put_f16(u, offsetof(block_q4_1, m), m);
            for (int i = 0; i < 32; i++) {
                unsigned q = rnd(16);
                loc_nibble32(offsetof(block_q4_1, qs), i, p); put_code(u, p, 1, q);
                want[i] = q * F(d) + F(m);
            }
            qt_dequantize_row_q4_1(&b, got, 32); check_block("q4_1", t, got, want, 32);
        }
        {   // q5_0: x = (q - 16) * d
            block_q5_0 b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_q5_0, d), d);
            for (int i = 0; i < 32; i++) {
                unsigned q = rnd(32);
                int n = loc_q5(offsetof(block_q5_0, qs), offsetof(block_q5_0, qh), i, p); put_code(u, p, n, q);
                want[i] = ((int)q - 16) * F(d);
            }
            qt_dequantize_row_q5_0(&b, got, 32); check_block("q5_0", t, got, want, 32);
        }
        {   // q5_1: x = q * d + m
            block_q5_1 b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(0), m = rnd_f16(1);
            put_f16(u, offsetof(block_q5_1, d), d); put_f16(u, offsetof(block_q5_1, m), m);
            for (int i = 0; i < 32; i++) {
                unsigned q = rnd(32);
                int n = loc_q5(offsetof(block_q5_1, qs), offsetof(block_q5_1, qh), i, p); put_code(u, p, n, q);
                want[i] = q * F(d) + F(m);
            }
            qt_dequantize_row_q5_1(&b, got, 32); check_block("q5_1", t, got, want, 32);
        }
        {   // q8_0: x = q * d, q two's complement
            block_q8_0 b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_q8_0, d), d);
            for (int i = 0; i < 32; i++) {
                int q = (int)rnd(256) - 128;
                put(u, PIECE(block_q8_0, qs, i, 0, 8), (unsigned)q & 0xff);
                want[i] = q * F(d);
            }
            qt_dequantize_row_q8_0(&b, got, 32); check_block("q8_0", t, got, want, 32);
        }
        {   // iq4_nl: x = d * kvalues[q]
            block_iq4_nl b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_iq4_nl, d), d);
            for (int i = 0; i < 32; i++) {
                unsigned q = rnd(16);
                loc_nibble32(offsetof(block_iq4_nl, qs), i, p); put_code(u, p, 1, q);
                want[i] = kv[q] * F(d);
            }
            qt_dequantize_row_iq4_nl(&b, got, 32); check_block("iq4_nl", t, got, want, 32);
        }
        {   // q2_K: 16 sub-blocks of 16; scales[j] = scale (low nibble) | min (high)
            //       x = d * sc * q - dmin * m
            block_q2_K b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(0), dmin = rnd_f16(0);
            put_f16(u, offsetof(block_q2_K, d), d); put_f16(u, offsetof(block_q2_K, dmin), dmin);
            unsigned sc[16], mn[16];
            for (int j = 0; j < 16; j++) {
                sc[j] = rnd(16); mn[j] = rnd(16);
                put(u, PIECE(block_q2_K, scales, j, 0, 4), sc[j]);
                put(u, PIECE(block_q2_K, scales, j, 4, 4), mn[j]);
            }
            for (int i = 0; i < QK_K; i++) {
                unsigned q = rnd(4);
                loc_2bit_k(offsetof(block_q2_K, qs), i, p); put_code(u, p, 1, q);
                want[i] = F(d) * sc[i / 16] * q - F(dmin) * mn[i / 16];
            }
            qt_dequantize_row_q2_K(&b, got, QK_K); check_block("q2_K", t, got, want, QK_K);
        }
        {   // q3_K: 16 signed 6-bit scales (stored + 32): low nibbles in bytes 0..7
            //       (j, then j-8 high), top 2 bits in byte 8 + j%4 at bit 2*(j/4);
            //       3-bit code = 2 low bits + hmask bit; x = d * (s - 32) * (code - 4)
            block_q3_K b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_q3_K, d), d);
            int sc[16];
            for (int j = 0; j < 16; j++) {
                unsigned s = rnd(64);
                sc[j] = (int)s - 32;
                piece ps[2] = { j < 8 ? PIECE(block_q3_K, scales, j, 0, 4) : PIECE(block_q3_K, scales, j - 8, 4, 4),
                                PIECE(block_q3_K, scales, 8 + j % 4, 2 * (j / 4), 2) };
                put_code(u, ps, 2, s);
            }
            for (int i = 0; i < QK_K; i++) {
                unsigned q = rnd(8);
                loc_2bit_k(offsetof(block_q3_K, qs), i, p);
                p[1] = PIECE(block_q3_K, hmask, i % 32, i / 32, 1);
                put_code(u, p, 2, q);
                want[i] = F(d) * sc[i / 16] * ((int)q - 4);
            }
            qt_dequantize_row_q3_K(&b, got, QK_K); check_block("q3_K", t, got, want, QK_K);
        }
        {   // q4_K: 8 sub-blocks of 32, 6-bit scale/min; x = d * sc * q - dmin * m
            block_q4_K b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(0), dmin = rnd_f16(0);
            put_f16(u, offsetof(block_q4_K, d), d); put_f16(u, offsetof(block_q4_K, dmin), dmin);
            unsigned sc[8], mn[8];
            for (int j = 0; j < 8; j++) {
                sc[j] = rnd(64); mn[j] = rnd(64);
                put_k4_scale_min(u, offsetof(block_q4_K, scales), j, sc[j], mn[j]);
            }
            for (int j = 0; j < 8; j++) {   // the exported unpacker agrees with the layout
                uint8_t s, m;
                qt_get_scale_min_k4(j, b.scales, &s, &m);
                CHECK(s == sc[j] && m == mn[j], "get_scale_min_k4(%d): %u/%u, want %u/%u", j, s, m, sc[j], mn[j]);
            }
            for (int i = 0; i < QK_K; i++) {
                unsigned q = rnd(16);
                loc_4bit_k(offsetof(block_q4_K, qs), i, p); put_code(u, p, 1, q);
                want[i] = F(d) * sc[i / 32] * q - F(dmin) * mn[i / 32];
            }
            qt_dequantize_row_q4_K(&b, got, QK_K); check_block("q4_K", t, got, want, QK_K);
        }
        {   // q5_K: as q4_K plus a 5th bit in qh[i % 32] bit i / 32
            block_q5_K b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(0), dmin = rnd_f16(0);
            put_f16(u, offsetof(block_q5_K, d), d); put_f16(u, offsetof(block_q5_K, dmin), dmin);
            unsigned sc[8], mn[8];
            for (int j = 0; j < 8; j++) {
                sc[j] = rnd(64); mn[j] = rnd(64);
                put_k4_scale_min(u, offsetof(block_q5_K, scales), j, sc[j], mn[j]);
            }
            for (int i = 0; i < QK_K; i++) {
                unsigned q = rnd(32);
                loc_4bit_k(offsetof(block_q5_K, qs), i, p);
                p[1] = PIECE(block_q5_K, qh, i % 32, i / 32, 1);
                put_code(u, p, 2, q);
                want[i] = F(d) * sc[i / 32] * q - F(dmin) * mn[i / 32];
            }
            qt_dequantize_row_q5_K(&b, got, QK_K); check_block("q5_K", t, got, want, QK_K);
        }
        {   // q6_K: 16 int8 scales; in each 128-half h, quarter g, lane l: low nibble in
            //       ql[64h + 32*(g%2) + l] (low for g<2, high for g>=2), top 2 bits in
            //       qh[32h + l] at bit 2g; x = d * sc * (q - 32)
            block_q6_K b; uint8_t *u = (uint8_t *)&b; memset(&b, 0, sizeof(b));
            uint16_t d = rnd_f16(1); put_f16(u, offsetof(block_q6_K, d), d);
            int sc[16];
            for (int j = 0; j < 16; j++) {
                sc[j] = (int)rnd(256) - 128;
                put(u, PIECE(block_q6_K, scales, j, 0, 8), (unsigned)sc[j] & 0xff);
            }
            for (int i = 0; i < QK_K; i++) {
                unsigned q = rnd(64);
                int h = i / 128, g = (i % 128) / 32, l = i % 32;
                p[0] = PIECE(block_q6_K, ql, 64 * h + 32 * (g % 2) + l, 4 * (g / 2), 4);
                p[1] = PIECE(block_q6_K, qh, 32 * h + l, 2 * g, 2);
                put_code(u, p, 2, q);
                want[i] = F(d) * sc[i / 16] * ((int)q - 32);
            }
            qt_dequantize_row_q6_K(&b, got, QK_K); check_block("q6_K", t, got, want, QK_K);
        }
        {   // q8_K: float d, x = d * q
            block_q8_K b; memset(&b, 0, sizeof(b));
            b.d = ldexpf(qt_rng_f32(&g_rng) + 0.5f, (int)rnd(20) - 10);
            for (int i = 0; i < QK_K; i++) {
                b.qs[i] = (int8_t)((int)rnd(256) - 128);
                want[i] = (double)b.d * b.qs[i];
            }
            qt_dequantize_row_q8_K(&b, got, QK_K); check_block("q8_K", t, got, want, QK_K);
        }
    }
}

// ---------------------------------------------------------------------------
// (b) round trips

typedef struct { int type; double tol; } rt_case;
static const rt_case rt_cases[] = {
    { QT_TYPE_Q8_0, RT_TOL_Q8_0 }, { QT_TYPE_Q8_K, RT_TOL_Q8_K }, { QT_TYPE_Q6_K, RT_TOL_Q6_K },
    { QT_TYPE_Q5_0, RT_TOL_Q5_0 }, { QT_TYPE_Q5_1, RT_TOL_Q5_1 }, { QT_TYPE_Q5_K, RT_TOL_Q5_K },
    { QT_TYPE_Q4_0, RT_TOL_Q4_0 }, { QT_TYPE_Q4_1, RT_TOL_Q4_1 }, { QT_TYPE_Q4_K, RT_TOL_Q4_K },
    { QT_TYPE_IQ4_NL, RT_TOL_IQ4_NL }, { QT_TYPE_Q3_K, RT_TOL_Q3_K }, { QT_TYPE_Q2_K, RT_TOL_Q2_K },
};

#define RT_N (QK_K * 64)

// RMSE(dequant(quant(x)) - x) / RMS(x); 0 when both are 0. *n_nonfinite counts NaN/inf outputs.
static double round_trip(int type, const float *x, float *y, int64_t n, int *n_nonfinite) {
    const qt_type_traits *t = qt_type_traits_get(type);
    void *q = malloc(qt_row_size(type, n));
    t->from_float_ref(x, q, n);
    t->to_float(q, y, n);
    free(q);
    double se = 0, ss = 0;
    *n_nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) { (*n_nonfinite)++; continue; }
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        ss += (double)x[i] * x[i];
    }
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

static void test_round_trips(void) {
    float *x = malloc(RT_N * sizeof(float)), *y = malloc(RT_N * sizeof(float));
    qt_rng rng;
    qt_rng_seed(&rng, 42);
    for (size_t c = 0; c < QT_ARRAY_LEN(rt_cases); c++) {
        const int type = rt_cases[c].type;
        const char *name = qt_type_name(type);
        int nnf;
        // Gaussian at three scales: 1, 1e3 (fp16 scales far from overflow), 1e-3
        const float mags[3] = { 1.0f, 1e3f, 1e-3f };
        for (int m = 0; m < 3; m++) {
            for (int i = 0; i < RT_N; i++) x[i] = mags[m] * qt_rng_normal(&rng);
            double r = round_trip(type, x, y, RT_N, &nnf);
            CHECK(nnf == 0 && r <= rt_cases[c].tol, "%s gaussian*%g: rel rmse %.5f > %.5f (%d non-finite)",
                  name, (double)mags[m], r, rt_cases[c].tol, nnf);
            if (m == 0) printf("  %-7s gaussian rel rmse %.5f (bound %.4f)\n", name, r, rt_cases[c].tol);
        }
        // all zeros decode to exact zeros
        memset(x, 0, RT_N * sizeof(float));
        round_trip(type, x, y, RT_N, &nnf);
        int n_nonzero = 0;
        for (int i = 0; i < RT_N; i++) n_nonzero += y[i] != 0.0f;
        CHECK(n_nonzero == 0 && nnf == 0, "%s: zeros decode to %d non-zeros", name, n_nonzero);
        // constants, positive and negative
        const float consts[3] = { 0.3f, -7.0f, 1.0f };
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < RT_N; i++) x[i] = consts[k];
            double r = round_trip(type, x, y, RT_N, &nnf);
            CHECK(nnf == 0 && r <= rt_cases[c].tol, "%s constant %g: rel rmse %.5f", name, (double)consts[k], r);
        }
        // skewed (all positive), with outliers, and alternating zero / signal blocks
        for (int i = 0; i < RT_N; i++) x[i] = 2.0f + fabsf(qt_rng_normal(&rng));
        double r = round_trip(type, x, y, RT_N, &nnf);
        CHECK(nnf == 0 && r <= rt_cases[c].tol, "%s all-positive: rel rmse %.5f", name, r);
        for (int i = 0; i < RT_N; i++) x[i] = (i / QK_K) % 2 ? qt_rng_normal(&rng) : 0.0f;
        r = round_trip(type, x, y, RT_N, &nnf);
        CHECK(nnf == 0 && r <= rt_cases[c].tol, "%s zero/signal blocks: rel rmse %.5f", name, r);
        int n_leak = 0;
        for (int i = 0; i < RT_N; i++) n_leak += (i / QK_K) % 2 == 0 && y[i] != 0.0f;
        CHECK(n_leak == 0, "%s: %d zero elements decode non-zero", name, n_leak);
        // tiny magnitudes: scales underflow toward fp16 subnormals
        for (int i = 0; i < RT_N; i++) x[i] = 1e-6f * qt_rng_normal(&rng);
        r = round_trip(type, x, y, RT_N, &nnf);
        const double tiny_tol = type == QT_TYPE_Q4_K || type == QT_TYPE_Q5_K ? RT_TOL_TINY_KMIN : RT_TOL_TINY;
        CHECK(nnf == 0 && r <= tiny_tol, "%s tiny: rel rmse %.5f", name, r);
        // large, yet within fp16 range for the stored scales and mins (|x| < 65504)
        for (int i = 0; i < RT_N; i++) x[i] = 1e4f * qt_rng_normal(&rng);
        r = round_trip(type, x, y, RT_N, &nnf);
        CHECK(nnf == 0 && r <= rt_cases[c].tol, "%s large: rel rmse %.5f", name, r);
    }

    // q8_K: bsums are the sums of 16 codes; q8_1: s = d * sum(q)
    for (int i = 0; i < RT_N; i++) x[i] = qt_rng_normal(&rng);
    {
        block_q8_K *b = malloc(qt_row_size(QT_TYPE_Q8_K, QK_K * 4));
        qt_quantize_row_q8_K_ref(x, b, QK_K * 4);
        int n_bad = 0;
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < QK_K / 16; j++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += b[i].qs[16 * j + l];
                n_bad += s != b[i].bsums[j];
            }
        }
        CHECK(n_bad == 0, "q8_K: %d wrong bsums", n_bad);
        free(b);
    }
    {
        block_q8_1 b[8];
        qt_quantize_row_q8_1_ref(x, b, QK8_1 * 8);
        int n_bad = 0;
        for (int i = 0; i < 8; i++) {
            int s = 0;
            double err = 0;
            for (int l = 0; l < QK8_1; l++) {
                s += b[i].qs[l];
                err = fmax(err, fabs(b[i].qs[l] * (double)qt_fp16_to_fp32(b[i].d) - x[i * QK8_1 + l]));
            }
            double want = s * (double)qt_fp16_to_fp32(b[i].d);
            // s holds d*sum rounded to fp16 (relative 2^-11), d itself rounded too
            n_bad += fabs(qt_fp16_to_fp32(b[i].s) - want) > 2e-3 * fabs(want) + 1e-6;
            n_bad += err > 0.6 * qt_fp16_to_fp32(b[i].d) + 1e-3 * fabs(x[i * QK8_1]);
        }
        CHECK(n_bad == 0, "q8_1: %d bad blocks", n_bad);
    }
    // f16 / bf16 / f32 rows through the traits
    for (int i = 0; i < 1024; i++) x[i] = qt_rng_normal(&rng);
    const int plain[3] = { QT_TYPE_F32, QT_TYPE_F16, QT_TYPE_BF16 };
    const double plain_tol[3] = { 0.0, 0x1p-11, 0x1p-8 };   // half an ulp, relative
    for (int k = 0; k < 3; k++) {
        int nnf;
        double r = round_trip(plain[k], x, y, 1024, &nnf);
        CHECK(r <= plain_tol[k], "%s row round trip %.3g", qt_type_name(plain[k]), r);
    }
    free(x);
    free(y);
}

// ---------------------------------------------------------------------------
// (e) bytes from ggml itself

#define FIXTURE_PATH "tests/data/quant-ggml.bin"
#define FIXTURE_MAGIC 0x46475451u   // "QTGF" little-endian
#define FIXTURE_VERSION 1u
#define FIXTURE_N 1024

// The input quantized for the fixture: 4 super-blocks of different shapes,
// from an xorshift64 stream using only exactly-rounded float arithmetic
// (no libm), so any IEEE machine reproduces it bit for bit.
static uint64_t fx_state;
static float fx_uniform(void) {    // [0, 1), 24 bits
    fx_state ^= fx_state << 13;
    fx_state ^= fx_state >> 7;
    fx_state ^= fx_state << 17;
    return (float)(fx_state >> 40) * 0x1p-24f;
}
static float fx_gauss(void) {      // Irwin-Hall(4), variance 1
    float s = fx_uniform() + fx_uniform() + fx_uniform() + fx_uniform();
    return (s - 2.0f) * 1.7320508f;
}
static void fixture_input(float *x) {
    fx_state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < FIXTURE_N; i++) {
        float g = fx_gauss();
        switch (i / QK_K) {
        case 0: x[i] = g; break;                                            // plain
        case 1: x[i] = (i % 37 == 0) ? 12.0f * g : 0.05f * g; break;       // outliers
        case 2: x[i] = 0.5f + fx_uniform(); break;                          // all positive
        default: x[i] = (i % 64) < 24 ? 0.0f : 1e-3f * g; break;            // zero runs, small
        }
    }
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void test_ggml_fixture(void) {
    size_t size = 0;
    char *data = qt_read_file(FIXTURE_PATH, &size);
    CHECK(data != NULL, "cannot read %s (run from the repository root)", FIXTURE_PATH);
    if (!data) return;
    const uint8_t *p = (const uint8_t *)data, *end = p + size;
    CHECK(size >= 16 && rd32(p) == FIXTURE_MAGIC && rd32(p + 4) == FIXTURE_VERSION && rd32(p + 8) == FIXTURE_N,
          "%s: bad header", FIXTURE_PATH);
    if (!(size >= 16 && rd32(p) == FIXTURE_MAGIC && rd32(p + 4) == FIXTURE_VERSION && rd32(p + 8) == FIXTURE_N)) {
        free(data);
        return;
    }
    uint32_t n_types = rd32(p + 12);
    p += 16;
    float x[FIXTURE_N], y[FIXTURE_N];
    fixture_input(x);
    // the stored input guards the generator itself
    CHECK((size_t)(end - p) >= sizeof(x) && memcmp(p, x, sizeof(x)) == 0, "fixture input differs from fixture_input()");
    p += sizeof(x);
    int n_seen = 0;
    for (uint32_t k = 0; k < n_types; k++) {
        if (end - p < 12) { CHECK(0, "fixture truncated"); break; }
        uint32_t type = rd32(p), nq = rd32(p + 4), ny = rd32(p + 8);
        p += 12;
        const qt_type_traits *t = qt_type_traits_get((int)type);
        CHECK(t && t->from_float_ref && nq == qt_row_size((qt_type)type, FIXTURE_N) && (ny == 0 || ny == FIXTURE_N),
              "fixture entry %u: type %u", k, type);
        if (!t || !t->from_float_ref || nq != qt_row_size((qt_type)type, FIXTURE_N) || (size_t)(end - p) < nq + ny * 4u) break;
        uint8_t *q = calloc(1, nq);
        t->from_float_ref(x, q, FIXTURE_N);
        size_t first = 0;
        while (first < nq && q[first] == p[first]) first++;
        CHECK(first == nq, "%s: quantized bytes differ from ggml's at byte %zu (block %zu, offset %zu)",
              t->name, first, first / t->type_size, first % t->type_size);
        if (ny) {
            // decode ggml's bytes with our dequantizer: bit-identical floats
            t->to_float(p, y, FIXTURE_N);
            CHECK(memcmp(y, p + nq, sizeof(y)) == 0, "%s: dequantized floats differ from ggml's", t->name);
        }
        free(q);
        p += nq + ny * 4u;
        n_seen++;
    }
    CHECK(n_seen == 13, "fixture holds %d types, want 13", n_seen);
    free(data);
}

int main(void) {
    test_table();
    test_fp16();
    test_bf16();
    test_dequant_layouts();
    test_round_trips();
    test_ggml_fixture();
    TEST_END();
}
