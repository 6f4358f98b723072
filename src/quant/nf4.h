// nf4.h: bitsandbytes' NF4 (4-bit NormalFloat, Dettmers et al. 2023, QLoRA)
// as a qtune type (QT_TYPE_NF4, in memory only: GGUF has no NF4):
//   blocks of 64 weights, each 4-bit index into the 16-value NF4 code book,
//   scaled by the block's absmax: w = code[q] * d.
// Layout of a block (row-major weights, 64 consecutive elements of a row):
//   d      float32, the block's absmax (after double quantization: its
//          dequantized 8-bit value, as bitsandbytes computes it before use)
//   qs[j]  elements 2j (high nibble) and 2j+1 (low nibble), bitsandbytes'
//          packing order (its flattened weight, blocks of 64, first element in
//          the high nibble)
// so a bitsandbytes 4-bit tensor maps block for block (d taken from its
// absmax, or from its double-quantized absmax), and dequantization is
// bit-exact: one float32 multiply per weight, as bitsandbytes' kernels do
// before casting to the compute dtype. 4.5 bits per weight (bitsandbytes with
// double quantization: ~4.13; its 8-bit absmax codes are expanded to floats here).
// Reference: bitsandbytes functional.py (get_4bit_type "nf4", quantize_4bit,
// dequantize_4bit, quantize_blockwise, create_dynamic_map, QuantState) and
// backends/default/ops.py (quantize_4bit / dequantize_4bit / quantize_blockwise).
#ifndef QT_NF4_H
#define QT_NF4_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#define QK_NF4 64
typedef struct {
    float d;                 // absmax of the block
    uint8_t qs[QK_NF4 / 2];  // 4-bit code indices, high nibble first
} block_nf4;
static_assert(sizeof(block_nf4) == 4 + QK_NF4 / 2, "wrong nf4 block size");

// bitsandbytes get_4bit_type("nf4"): create_normal_map(0.9677083), sorted, max 1.
extern const float qt_nf4_values[16];
// bitsandbytes create_dynamic_map() (signed, 7 exponent bits, 8 bits), the
// code of quantize_blockwise that double quantization uses for the absmax.
extern const float qt_nf4_dynamic_map[256];
// Blocks of absmax values per nested (double-quantization) scale: bitsandbytes' 256.
#define QT_NF4_DQ_BLOCK 256

void qt_dequantize_row_nf4(const block_nf4 *x, float *y, int64_t k);
// bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64): absmax per
// block, x * (1 / absmax) clamped to [-1, 1], the code index by bucketize on
// the midpoints of adjacent code values (a tie goes to the lower index).
void qt_quantize_row_nf4_ref(const float *x, block_nf4 *y, int64_t k);
// Double quantization (quantize_4bit's compress_statistics) of the absmax of
// n consecutive blocks (a whole tensor, flattened as bitsandbytes does):
// offset = mean(d) (summed in double), (d - offset) quantized with
// quantize_blockwise(blocksize 256, the dynamic map), and every d replaced by
// the value bitsandbytes dequantizes: code[q] * nested_absmax + offset.
void qt_nf4_double_quant(block_nf4 *x, int64_t n);

#endif
