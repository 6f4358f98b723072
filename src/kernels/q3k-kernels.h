// q3k-kernels.h: the AVX2 Q3_K kernels (q3k-avx2.c) for the AVX2 table
// (kernels-avx2.c); src/kernels only. Q3_K had only the scalar reference,
// which made a Q3_K model (Mixtral-8x7B fits 24 GiB only as Q3_K) run at
// scalar speed.
#ifndef QT_Q3K_KERNELS_H
#define QT_Q3K_KERNELS_H

#include "kernels/kernels.h"

// vec_dot (x Q8_K) and to_float of Q3_K into the table.
void qt_q3_K_set_avx2(qt_kernel_traits *t);

#endif
