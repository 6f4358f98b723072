// quant.h: scalar reference (de)quantizers, one pair per type, written from
// the block definitions in blocks.h and following ggml-quants.c (llama.cpp)
// so that our files and llama.cpp's agree bit for bit where the algorithm is
// deterministic. These are the oracles the fast kernels are tested against.
// All take k = element count, a multiple of the type's block size. Inputs to
// the quantizers must be finite (NaN/inf give unspecified codes, as in ggml).
// q8_1 has no dequantizer: it only exists as the activation side of dot products.
// iq4_nl quantizes as llama-quantize does without an imatrix (quantize_iq4_nl,
// scale search over 15 candidate scales), not as ggml's quantize_row_iq4_nl_ref
// (which skips the search).
#ifndef QT_QUANT_H
#define QT_QUANT_H

#include <stdint.h>

#include "quant/blocks.h"

void qt_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k);
void qt_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k);
void qt_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k);
void qt_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k);
void qt_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k);
void qt_dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k);
void qt_dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k);
void qt_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k);
void qt_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k);
void qt_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k);
void qt_dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k);
void qt_dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k);

void qt_quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k);
void qt_quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k);
void qt_quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k);
void qt_quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k);
void qt_quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k);
void qt_quantize_row_q8_1_ref(const float *x, block_q8_1 *y, int64_t k);
void qt_quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k);
void qt_quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k);
void qt_quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k);
void qt_quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k);
void qt_quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k);
void qt_quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k);
void qt_quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k);

// The 6-bit scale (*d) and min (*m) of sub-block j (0..7) of a q4_K / q5_K
// super-block, unpacked from its 12-byte `scales` field q (ggml get_scale_min_k4).
void qt_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);

#endif
