// vecmath-internal.h: how each kernel table gets its element-wise math
// entries (exp_f32, max_f32, exp_sum_f32, swiglu_f32, swiglu_backward_f32;
// see kernels.h). Shared between files of src/kernels only.
#ifndef QT_VECMATH_INTERNAL_H
#define QT_VECMATH_INTERNAL_H

#include "kernels/kernels.h"

void qt_vecmath_set_ref(qt_kernel_table *kt);    // vecmath-ref.c: libm expf, scalar loops
void qt_vecmath_set_avx2(qt_kernel_table *kt);   // vecmath-avx2.c (the avx512 table inherits it)
void qt_vecmath_set_neon(qt_kernel_table *kt);   // vecmath-neon.c

#endif
