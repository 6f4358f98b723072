// vecmath-internal.h: how each kernel table gets its entries: the ISA files'
// fill functions (cpu.c assembles the tables from them, each adding to the
// table before it in the chain) and the element-wise math (exp_f32, max_f32,
// exp_sum_f32, swiglu_f32, swiglu_backward_f32; see kernels.h). Shared
// between files of src/kernels only.
#ifndef QT_VECMATH_INTERNAL_H
#define QT_VECMATH_INTERNAL_H

#include "kernels/kernels.h"

void qt_kernels_fill_ref(qt_kernel_table *kt);          // kernels-ref.c: the whole table
void qt_kernels_fill_avx2(qt_kernel_table *kt);         // kernels-avx2.c, on ref's
void qt_kernels_fill_avx512(qt_kernel_table *kt);       // kernels-avx512.c, on avx2's
void qt_kernels_fill_avx512vnni(qt_kernel_table *kt);   // kernels-avx512vnni.c, on avx512's
void qt_kernels_fill_avx512bf16(qt_kernel_table *kt);   // kernels-avx512bf16.c, on avx512-vnni's
void qt_kernels_fill_neon(qt_kernel_table *kt, bool bf16, bool i8mm);   // kernels-neon.c, on ref's

void qt_vecmath_set_ref(qt_kernel_table *kt);    // vecmath-ref.c: libm expf, scalar loops
void qt_vecmath_set_avx2(qt_kernel_table *kt);     // vecmath-avx2.c
void qt_vecmath_set_avx512(qt_kernel_table *kt);   // vecmath-avx512.c (the avx512 tables, from avx512 on)
void qt_vecmath_set_neon(qt_kernel_table *kt);   // vecmath-neon.c

#endif
