// types.h: the tensor element types qt understands, numbered exactly as GGML
// numbers them (ggml.h `enum ggml_type`), so a GGUF type id is a qt_type.
// Append-only. The traits table (types.c) gives block size, bytes per block and
// the scalar reference conversions; fast conversions live in kernels/.
#ifndef QT_TYPES_H
#define QT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    QT_TYPE_F32 = 0,
    QT_TYPE_F16 = 1,
    QT_TYPE_Q4_0 = 2,
    QT_TYPE_Q4_1 = 3,
    // 4, 5: Q4_2, Q4_3, removed from GGML
    QT_TYPE_Q5_0 = 6,
    QT_TYPE_Q5_1 = 7,
    QT_TYPE_Q8_0 = 8,
    QT_TYPE_Q8_1 = 9,
    QT_TYPE_Q2_K = 10,
    QT_TYPE_Q3_K = 11,
    QT_TYPE_Q4_K = 12,
    QT_TYPE_Q5_K = 13,
    QT_TYPE_Q6_K = 14,
    QT_TYPE_Q8_K = 15,
    QT_TYPE_IQ2_XXS = 16,
    QT_TYPE_IQ2_XS = 17,
    QT_TYPE_IQ3_XXS = 18,
    QT_TYPE_IQ1_S = 19,
    QT_TYPE_IQ4_NL = 20,
    QT_TYPE_IQ3_S = 21,
    QT_TYPE_IQ2_S = 22,
    QT_TYPE_IQ4_XS = 23,
    QT_TYPE_I8 = 24,
    QT_TYPE_I16 = 25,
    QT_TYPE_I32 = 26,
    QT_TYPE_I64 = 27,
    QT_TYPE_F64 = 28,
    QT_TYPE_IQ1_M = 29,
    QT_TYPE_BF16 = 30,
    // qtune's own types, from QT_TYPE_FIRST_PRIVATE: in memory only, never in
    // a GGUF file (the reader refuses them, the writers convert them)
    QT_TYPE_NF4 = 64,    // bitsandbytes NF4 (quant/nf4.h)
    QT_TYPE_COUNT = 65,
} qt_type;
#define QT_TYPE_FIRST_PRIVATE 64

typedef void (*qt_to_float_fn)(const void *src, float *dst, int64_t n);      // n % blck == 0
typedef void (*qt_from_float_fn)(const float *src, void *dst, int64_t n);    // n % blck == 0

typedef struct {
    const char *name;        // "q4_0", as GGML and llama.cpp spell it
    int blck_size;           // elements per block (1 for plain types)
    size_t type_size;        // bytes per block
    bool is_quantized;
    qt_to_float_fn to_float;         // scalar reference dequantization (NULL: unsupported)
    qt_from_float_fn from_float_ref; // scalar reference quantization (NULL: unsupported)
} qt_type_traits;

// NULL for ids qt does not know (removed or unassigned). Known types whose
// conversions are missing have NULL function pointers.
const qt_type_traits *qt_type_traits_get(int type);
const char *qt_type_name(int type);         // "unknown(N)" never; "?" for unknown ids
int qt_type_from_name(const char *name);    // -1 if unknown; case-insensitive
// Bytes of a row of n elements; QT_ASSERTs n % blck_size == 0.
size_t qt_row_size(qt_type type, int64_t n);

// Scalar IEEE half and bfloat16 conversions (round to nearest even).
float qt_fp16_to_fp32(uint16_t h);
uint16_t qt_fp32_to_fp16(float f);
static inline float qt_bf16_to_fp32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t qt_fp32_to_bf16(float f) {
    union { uint32_t u; float f; } v = { .f = f };
    if ((v.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((v.u >> 16) | 64);  // quiet NaN
    return (uint16_t)((v.u + (0x7fff + ((v.u >> 16) & 1))) >> 16);
}

#endif
