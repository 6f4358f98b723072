// legacy-kernels.h: SIMD kernels of the legacy 32-element GGUF types Q4_1,
// Q5_0, Q5_1 and IQ4_NL (legacy-avx2.c, legacy-neon.c) for the AVX2 and NEON
// tables; src/kernels only. These types had only the scalar reference, so a
// Q5_0 model decoded at scalar speed (TinyLlama: 1.4 tokens/s against ~45 for
// Q4_0).
#ifndef QT_LEGACY_KERNELS_H
#define QT_LEGACY_KERNELS_H

#include "kernels/kernels.h"

// vec_dot (x Q8_0, the pairing of kernels-ref.c, Q4_1 and Q5_1 included) and
// to_float of the four types into the table. The AVX-512 tables start from a
// copy of the AVX2 table and inherit them.
void qt_legacy_set_avx2(qt_kernel_traits *t);

// The x86 tables' int8 products of the four types, in the order Q4_1, Q5_0,
// Q5_1, IQ4_NL (gemm tiles, gemv, gemm_small up to small_max_t tokens), into
// the table where it pairs the type with Q8_0 (legacy-avx2.c).
void qt_legacy_set_products_x86(qt_kernel_traits *t, const qt_gemm_fn gemm[4], const qt_gemv_fn gemv[4],
                                const qt_gemm_fn small[4], int small_max_t);

// The same on arm64 (vec_dot and to_float of Q4_1, Q5_0, Q5_1; to_float of
// IQ4_NL, whose vec_dot is kernels-neon.c's).
void qt_legacy_set_neon(qt_kernel_traits *t);

#endif
