// gemm-f32-avx2.c: C (M, N) += A (M, K) @ B (K, N) in float32 with AVX2 + FMA,
// the AVX2 table's gemm_acc_f32 (qt_matmul_t's inner kernel: dx += dy @ W,
// W dequantized a tile at a time).
//
// Goto/BLIS blocking: B is packed a (KC x NC) block at a time into column
// panels of NR = 16 (one panel, KC x 16 floats = 16 KiB, stays in L1 while the
// A panels stream past it); A is packed an (MC x KC) block at a time into row
// panels of MR = 6, k-major (6 floats per k, read by broadcasts). The micro-
// kernel holds a 6 x 16 tile of C in 12 ymm accumulators (enough independent
// FMA chains for two FMA ports at 4-5 cycles latency) and per k does 2 loads
// of B, 6 broadcasts of A and 12 FMAs. Packing also keeps the operands off
// the few L1 sets that rows a power-of-two stride apart would share. Ragged
// edges: the packs are zero-padded to whole panels and edge tiles of C go
// through a 6 x 16 scratch tile, so every tile runs the same kernel and sums in
// the same order (k ascending, from C's old value).
// The packs live in a per-thread scratch buffer (qt_kernel_scratch) kept
// between calls. Deliberately not: threading (qt_matmul_t splits the columns), an
// assembly kernel, prefetch tuning, or packing W straight from its blocks.
// Follows BLIS's haswell sgemm (6 x 16 micro-tile) and Goto & van de Geijn,
// "Anatomy of high-performance matrix multiplication" (2008).
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "kernels/matmul-internal.h"

#define MR 6
#define NR 16
#define KC 256   // A panel MR x KC = 6 KiB, B panel KC x NR = 16 KiB: both in L1
#define MC 96    // A block MC x KC = 96 KiB in L2
#define NC 1024  // B block KC x NC = 1 MiB, L3; reused by every A block

// C (6 x 16, row stride ldc) += Ap (K x 6, k-major) @ Bp (K x 16)
static void kernel_6x16(int K, const float *restrict Ap, const float *restrict Bp, float *restrict C, size_t ldc) {
    float *c0 = C, *c1 = C + ldc, *c2 = C + 2 * ldc, *c3 = C + 3 * ldc, *c4 = C + 4 * ldc, *c5 = C + 5 * ldc;
    __m256 a00 = _mm256_loadu_ps(c0), a01 = _mm256_loadu_ps(c0 + 8);
    __m256 a10 = _mm256_loadu_ps(c1), a11 = _mm256_loadu_ps(c1 + 8);
    __m256 a20 = _mm256_loadu_ps(c2), a21 = _mm256_loadu_ps(c2 + 8);
    __m256 a30 = _mm256_loadu_ps(c3), a31 = _mm256_loadu_ps(c3 + 8);
    __m256 a40 = _mm256_loadu_ps(c4), a41 = _mm256_loadu_ps(c4 + 8);
    __m256 a50 = _mm256_loadu_ps(c5), a51 = _mm256_loadu_ps(c5 + 8);
#pragma GCC unroll 4
    for (int k = 0; k < K; k++, Ap += MR, Bp += NR) {
        __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8), x;
        x = _mm256_broadcast_ss(Ap + 0);
        a00 = _mm256_fmadd_ps(x, b0, a00); a01 = _mm256_fmadd_ps(x, b1, a01);
        x = _mm256_broadcast_ss(Ap + 1);
        a10 = _mm256_fmadd_ps(x, b0, a10); a11 = _mm256_fmadd_ps(x, b1, a11);
        x = _mm256_broadcast_ss(Ap + 2);
        a20 = _mm256_fmadd_ps(x, b0, a20); a21 = _mm256_fmadd_ps(x, b1, a21);
        x = _mm256_broadcast_ss(Ap + 3);
        a30 = _mm256_fmadd_ps(x, b0, a30); a31 = _mm256_fmadd_ps(x, b1, a31);
        x = _mm256_broadcast_ss(Ap + 4);
        a40 = _mm256_fmadd_ps(x, b0, a40); a41 = _mm256_fmadd_ps(x, b1, a41);
        x = _mm256_broadcast_ss(Ap + 5);
        a50 = _mm256_fmadd_ps(x, b0, a50); a51 = _mm256_fmadd_ps(x, b1, a51);
    }
    _mm256_storeu_ps(c0, a00); _mm256_storeu_ps(c0 + 8, a01);
    _mm256_storeu_ps(c1, a10); _mm256_storeu_ps(c1 + 8, a11);
    _mm256_storeu_ps(c2, a20); _mm256_storeu_ps(c2 + 8, a21);
    _mm256_storeu_ps(c3, a30); _mm256_storeu_ps(c3 + 8, a31);
    _mm256_storeu_ps(c4, a40); _mm256_storeu_ps(c4 + 8, a41);
    _mm256_storeu_ps(c5, a50); _mm256_storeu_ps(c5 + 8, a51);
}

// Bp = B (kc x nc) as ceil(nc / 16) panels of (kc x 16), zero-padded columns.
static void pack_b(float *restrict Bp, const float *restrict B, size_t ldb, int kc, int nc) {
    int n_full = nc / NR, rem = nc % NR;
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)k * ldb;
        float *d = Bp + (size_t)k * NR;
        for (int p = 0; p < n_full; p++, b += NR, d += (size_t)kc * NR) {
            _mm256_store_ps(d, _mm256_loadu_ps(b));
            _mm256_store_ps(d + 8, _mm256_loadu_ps(b + 8));
        }
        if (rem) {
            int j = 0;
            for (; j < rem; j++) d[j] = b[j];
            for (; j < NR; j++) d[j] = 0;
        }
    }
}

// Ap = A (mc x kc) as ceil(mc / 6) panels of (kc x 6), k-major, zero-padded rows.
// Full panels transpose 6 rows x 8 k at a time; each k's 8-float store spills
// 2 floats into the next k's slots, which the next store overwrites (the block
// has 2 floats of slack at its end).
static void pack_a(float *restrict Ap, const float *restrict A, size_t lda, int mc, int kc) {
    for (int i0 = 0; i0 < mc; i0 += MR, Ap += (size_t)kc * MR) {
        const float *a = A + (size_t)i0 * lda;
        int rows = QT_MIN(MR, mc - i0), k = 0;
        if (rows == MR) {
            for (; k + 8 <= kc; k += 8) {
                __m256 r0 = _mm256_loadu_ps(a + k), r1 = _mm256_loadu_ps(a + lda + k);
                __m256 r2 = _mm256_loadu_ps(a + 2 * lda + k), r3 = _mm256_loadu_ps(a + 3 * lda + k);
                __m256 r4 = _mm256_loadu_ps(a + 4 * lda + k), r5 = _mm256_loadu_ps(a + 5 * lda + k);
                __m256 z = _mm256_setzero_ps();
                // 8 x 8 transpose of rows r0..r5, 0, 0: column k of the block ends in t[k]
                __m256 u0 = _mm256_unpacklo_ps(r0, r1), u1 = _mm256_unpackhi_ps(r0, r1);
                __m256 u2 = _mm256_unpacklo_ps(r2, r3), u3 = _mm256_unpackhi_ps(r2, r3);
                __m256 u4 = _mm256_unpacklo_ps(r4, r5), u5 = _mm256_unpackhi_ps(r4, r5);
                __m256 s0 = _mm256_shuffle_ps(u0, u2, 0x44), s1 = _mm256_shuffle_ps(u0, u2, 0xee);
                __m256 s2 = _mm256_shuffle_ps(u1, u3, 0x44), s3 = _mm256_shuffle_ps(u1, u3, 0xee);
                __m256 s4 = _mm256_shuffle_ps(u4, z, 0x44), s5 = _mm256_shuffle_ps(u4, z, 0xee);
                __m256 s6 = _mm256_shuffle_ps(u5, z, 0x44), s7 = _mm256_shuffle_ps(u5, z, 0xee);
                float *d = Ap + (size_t)k * MR;
                // lane 0 holds k..k+3, lane 1 k+4..k+7; s0..s3 rows 0-3, s4..s7 rows 4-5 (+2 zeros)
                __m256 t0 = _mm256_permute2f128_ps(s0, s4, 0x20), t1 = _mm256_permute2f128_ps(s1, s5, 0x20);
                __m256 t2 = _mm256_permute2f128_ps(s2, s6, 0x20), t3 = _mm256_permute2f128_ps(s3, s7, 0x20);
                __m256 t4 = _mm256_permute2f128_ps(s0, s4, 0x31), t5 = _mm256_permute2f128_ps(s1, s5, 0x31);
                __m256 t6 = _mm256_permute2f128_ps(s2, s6, 0x31), t7 = _mm256_permute2f128_ps(s3, s7, 0x31);
                _mm256_storeu_ps(d + 0 * MR, t0); _mm256_storeu_ps(d + 1 * MR, t1);
                _mm256_storeu_ps(d + 2 * MR, t2); _mm256_storeu_ps(d + 3 * MR, t3);
                _mm256_storeu_ps(d + 4 * MR, t4); _mm256_storeu_ps(d + 5 * MR, t5);
                _mm256_storeu_ps(d + 6 * MR, t6); _mm256_storeu_ps(d + 7 * MR, t7);
            }
        }
        for (; k < kc; k++) {
            float *d = Ap + (size_t)k * MR;
            int i = 0;
            for (; i < rows; i++) d[i] = a[(size_t)i * lda + k];
            for (; i < MR; i++) d[i] = 0;
        }
    }
}

void qt_gemm_acc_f32_avx2(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    int kc_max = QT_MIN(K, KC), nc_max = QT_MIN((N + NR - 1) / NR * NR, NC);
    int mc_max = QT_MIN((M + MR - 1) / MR * MR, MC);
    size_t nb = (size_t)kc_max * nc_max, na = (size_t)mc_max * kc_max + 8;   // + pack_a's slack
    float *Bp = qt_kernel_scratch(QT_SCRATCH_GEMM, (nb + na) * sizeof(float)), *Ap = Bp + nb;
    float tmp[MR * NR];
    for (int jc = 0; jc < N; jc += NC) {
        int nc = QT_MIN(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            int kc = QT_MIN(KC, K - pc);
            pack_b(Bp, B + (size_t)pc * ldb + jc, (size_t)ldb, kc, nc);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = QT_MIN(MC, M - ic);
                pack_a(Ap, A + (size_t)ic * lda + pc, (size_t)lda, mc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bp = Bp + (size_t)jr * kc;
                    int nr = QT_MIN(NR, nc - jr);
                    for (int ir = 0; ir < mc; ir += MR) {
                        const float *ap = Ap + (size_t)ir * kc;
                        int mr = QT_MIN(MR, mc - ir);
                        float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                        if (mr == MR && nr == NR) {
                            kernel_6x16(kc, ap, bp, c, (size_t)ldc);
                        } else {
                            memset(tmp, 0, sizeof(tmp));
                            for (int i = 0; i < mr; i++) memcpy(tmp + i * NR, c + (size_t)i * ldc, sizeof(float) * nr);
                            kernel_6x16(kc, ap, bp, tmp, NR);
                            for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * ldc, tmp + i * NR, sizeof(float) * nr);
                        }
                    }
                }
            }
        }
    }
}
