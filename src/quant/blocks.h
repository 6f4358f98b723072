// blocks.h: quantization block layouts, byte for byte as GGML defines them
// (ggml/src/ggml-common.h). Sizes are pinned with static asserts because the
// structs ARE the file format. fp16 fields are stored as raw uint16_t.
#ifndef QT_BLOCKS_H
#define QT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#define QK4_0 32
typedef struct {
    uint16_t d;              // delta (fp16)
    uint8_t qs[QK4_0 / 2];   // nibbles: low = element j, high = element j + 16; x = (q - 8) * d
} block_q4_0;
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "wrong q4_0 block size");

#define QK4_1 32
typedef struct {
    uint16_t d;              // delta (fp16)
    uint16_t m;              // min (fp16); x = q * d + m
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 4 + QK4_1 / 2, "wrong q4_1 block size");

#define QK5_0 32
typedef struct {
    uint16_t d;              // delta (fp16)
    uint8_t qh[4];           // 5th bit of each element: bit j of the u32 for element j
    uint8_t qs[QK5_0 / 2];   // low 4 bits as in q4_0; x = (q - 16) * d
} block_q5_0;
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "wrong q5_0 block size");

#define QK5_1 32
typedef struct {
    uint16_t d;              // delta (fp16)
    uint16_t m;              // min (fp16); x = q * d + m
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 4 + 4 + QK5_1 / 2, "wrong q5_1 block size");

#define QK8_0 32
typedef struct {
    uint16_t d;              // delta (fp16); x = q * d
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "wrong q8_0 block size");

#define QK8_1 32
typedef struct {
    uint16_t d;              // delta (fp16)
    uint16_t s;              // d * sum(qs) (fp16)
    int8_t qs[QK8_1];
} block_q8_1;
static_assert(sizeof(block_q8_1) == 4 + QK8_1, "wrong q8_1 block size");

// ---- k-quants: super-blocks of 256 ----
#define QK_K 256
#define K_SCALE_SIZE 12

// 2.625 bits per weight
typedef struct {
    uint8_t scales[QK_K / 16];  // 4-bit scales (low) and mins (high)
    uint8_t qs[QK_K / 4];       // 2-bit quants
    uint16_t d;                 // super-block scale for scales (fp16)
    uint16_t dmin;              // super-block scale for mins (fp16)
} block_q2_K;
static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "wrong q2_K block size");

// 3.4375 bits per weight
typedef struct {
    uint8_t hmask[QK_K / 8];    // high bit
    uint8_t qs[QK_K / 4];       // low 2 bits
    uint8_t scales[12];         // 6-bit scales
    uint16_t d;                 // super-block scale (fp16)
} block_q3_K;
static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "wrong q3_K block size");

// 4.5 bits per weight: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes
typedef struct {
    uint16_t d;                     // super-block scale for scales (fp16)
    uint16_t dmin;                  // super-block scale for mins (fp16)
    uint8_t scales[K_SCALE_SIZE];   // scales and mins, 6 bits each
    uint8_t qs[QK_K / 2];           // 4-bit quants
} block_q4_K;
static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "wrong q4_K block size");

// 5.5 bits per weight
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];           // high bit
    uint8_t qs[QK_K / 2];           // low 4 bits
} block_q5_K;
static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8, "wrong q5_K block size");

// 6.5625 bits per weight: 16 sub-blocks of 16, 8-bit scales
typedef struct {
    uint8_t ql[QK_K / 2];       // low 4 bits
    uint8_t qh[QK_K / 4];       // high 2 bits
    int8_t scales[QK_K / 16];   // 8-bit scales
    uint16_t d;                 // super-block scale (fp16)
} block_q6_K;
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "wrong q6_K block size");

// Intermediate type for k-quant dot products (activations)
typedef struct {
    float d;                    // delta
    int8_t qs[QK_K];            // quants
    int16_t bsums[QK_K / 16];   // sum of quants in groups of 16
} block_q8_K;
static_assert(sizeof(block_q8_K) == sizeof(float) + QK_K + QK_K / 16 * sizeof(int16_t), "wrong q8_K block size");

// Non-linear 4-bit (the GGUF counterpart of NF4): x = kvalues_iq4nl[q] * d
#define QK4_NL 32
typedef struct {
    uint16_t d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 2 + QK4_NL / 2, "wrong iq4_nl block size");

extern const int8_t qt_kvalues_iq4nl[16];

#endif
