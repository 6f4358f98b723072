// nf4-kernels.h: NF4 (quant/nf4.h) kernels, declared for the kernel tables
// that register them (kernels-ref.c, kernels-avx2.c); src/kernels only.
// NF4 weights pair with float32 activations (vec_dot_type F32): the code
// book's values are not integers, so an 8-bit activation path would round
// the weights too; every product here is of the exact dequantized weight.
#ifndef QT_NF4_KERNELS_H
#define QT_NF4_KERNELS_H

#include <stddef.h>

#include "kernels/kernels.h"

// s = dot(x NF4 row, y float32 row) over n (a multiple of 64) elements.
void qt_vec_dot_nf4_ref(int n, float *s, const void *x, const void *y);

// The AVX2 table's NF4 entries (nf4-avx2.c): vec_dot, gemv, to_float. Prompts
// and training run the table's float gemm on rows to_float dequantizes
// (matmul.c mm_plan: NF4 pairs with float activations).
void qt_nf4_set_avx2(qt_kernel_traits *t);

// The AVX-512 table's (nf4-avx512.c): vec_dot, gemv and to_float on one
// 16-entry vpermps per 16 weights.
void qt_nf4_set_avx512(qt_kernel_traits *t);

#endif
