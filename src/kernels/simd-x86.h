// simd-x86.h: the x86 intrinsics for the *-avx2.c and *-avx512*.c files.
// Normally the compiler's <immintrin.h> (each file built with its ISA flags);
// built with QT_SIMDE (make simde-test), SIMDe's portable implementations of
// the same intrinsics, so the AVX2 and AVX-512 code paths are tested against
// the scalar reference on machines without those instructions.
#ifndef QT_SIMD_X86_H
#define QT_SIMD_X86_H

#if defined(QT_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>
#else
#include <immintrin.h>
#endif

#endif
