// vecmath-avx2.c: element-wise math for the AVX2+FMA table: exp, max,
// exp-sum (softmax, cross-entropy), SwiGLU forward and backward, the double
// dot, the softmax gradient and the RMSNorm rows, 8 floats at a time
// (vecmath-avx512.c is the same 16 wide, for the avx512 tables).
//
// exp(x) = 2^n * p(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2
// split in a 9-bit high part, exact for |n| < 2^15, and a low part, both
// through FMA), |r| <= ln2/2, p(r) = 1 + r + r^2 P5(r) with Cephes expf's
// minimax coefficients. 2^n is applied as two factors 2^(n/2) and
// 2^(n - n/2), so n in [-150, 128] needs no special case: subnormal results
// are rounded once by the last multiply and overflow gives +inf. Input is
// clamped to [-104, 89] first (expf(-104) rounds to 0, expf(89) is +inf);
// the clamp keeps NaN. Max relative error: QT_EXP_MAX_REL_ERR (kernels.h).
//
// A ragged tail goes through the same vector code via a small padded buffer,
// so every element's result is the same wherever an array is cut (threads
// split SwiGLU at arbitrary points). Deliberately not: a table-driven exp, a
// faster lower-accuracy variant, denormal-flushing modes.
// References: Cephes expf.c (S. Moshier), ARM optimized-routines expf.
#include "kernels/simd-x86.h"
#include <math.h>
#include <string.h>

#include "kernels/vecmath-internal.h"

static inline __m256 exp8(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));   // NaN stays NaN
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i e1 = _mm256_srai_epi32(ni, 1), e2 = _mm256_sub_epi32(ni, e1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static void exp_f32_avx2(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float b[8] = {0};
        memcpy(b, x + i, sizeof(float) * (n - i));
        _mm256_storeu_ps(b, exp8(_mm256_loadu_ps(b)));
        memcpy(y + i, b, sizeof(float) * (n - i));
    }
}

static float max_f32_avx2(int n, const float *x) {
    float mx = -INFINITY;
    int i = 0;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);   // a NaN in x is skipped
        float b[8];
        _mm256_storeu_ps(b, m);
        for (int k = 0; k < 8; k++) mx = b[k] > mx ? b[k] : mx;
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

// sum of the 4 + 4 doubles in a fixed order
static inline double hsum_pd(__m256d a, __m256d b) {
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a, b));
    return (t[0] + t[1]) + (t[2] + t[3]);
}

static double exp_sum_f32_avx2(int n, const float *x, float scale, float shift, float *y) {
    const __m256 vs = _mm256_set1_ps(scale), vsh = _mm256_set1_ps(shift);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vsh));
        if (y) _mm256_storeu_ps(y + i, e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double sum = hsum_pd(acc0, acc1);
    if (i < n) {
        float b[8] = {0};
        memcpy(b, x + i, sizeof(float) * (n - i));
        _mm256_storeu_ps(b, exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(b), vs), vsh)));
        for (int k = 0; k < n - i; k++) sum += b[k];
        if (y) memcpy(y + i, b, sizeof(float) * (n - i));
    }
    return sum;
}

static inline __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

static void swiglu_f32_avx2(int n, const float *gate, const float *up, float *out) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        float g[8] = {0}, u[8] = {0};
        memcpy(g, gate + i, sizeof(float) * (n - i));
        memcpy(u, up + i, sizeof(float) * (n - i));
        _mm256_storeu_ps(g, swiglu8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
        memcpy(out + i, g, sizeof(float) * (n - i));
    }
}

// one block of 8: dgate += dout * up * sig * (1 + g (1 - sig)), dup += dout * (g sig)
static inline void swiglu_bwd8(const float *dout, const float *gate, const float *up, float *dgate, float *dup) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 g = _mm256_loadu_ps(gate), d = _mm256_loadu_ps(dout);
    __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)))));
    if (dgate) {
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(up)), sig);
        t = _mm256_mul_ps(t, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sig))));
        _mm256_storeu_ps(dgate, _mm256_add_ps(_mm256_loadu_ps(dgate), t));
    }
    if (dup) _mm256_storeu_ps(dup, _mm256_add_ps(_mm256_loadu_ps(dup), _mm256_mul_ps(d, _mm256_mul_ps(g, sig))));
}

static void swiglu_backward_f32_avx2(int n, const float *dout, const float *gate, const float *up, float *dgate,
                                     float *dup) {
    int i = 0;
    for (; i + 8 <= n; i += 8) swiglu_bwd8(dout + i, gate + i, up + i, dgate ? dgate + i : NULL, dup ? dup + i : NULL);
    if (i < n) {
        int k = n - i;
        float d[8] = {0}, g[8] = {0}, u[8] = {0}, dg[8] = {0}, du[8] = {0};
        memcpy(d, dout + i, sizeof(float) * k);
        memcpy(g, gate + i, sizeof(float) * k);
        memcpy(u, up + i, sizeof(float) * k);
        if (dgate) memcpy(dg, dgate + i, sizeof(float) * k);
        if (dup) memcpy(du, dup + i, sizeof(float) * k);
        swiglu_bwd8(d, g, u, dgate ? dg : NULL, dup ? du : NULL);
        if (dgate) memcpy(dgate + i, dg, sizeof(float) * k);
        if (dup) memcpy(dup + i, du, sizeof(float) * k);
    }
}

static double dot_f32_f64_avx2(int n, const float *x, const float *y) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(y + i);
        acc0 = _mm256_add_pd(acc0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                                                 _mm256_cvtps_pd(_mm256_castps256_ps128(b))));
        acc1 = _mm256_add_pd(acc1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))));
    }
    double sum = hsum_pd(acc0, acc1);
    for (; i < n; i++) sum += (double)x[i] * y[i];
    return sum;
}

static void softmax_grad_f32_avx2(int n, const float *p, const float *dp, const float *d, float d0, float scale,
                                  float *out) {
    const __m256 vs = _mm256_set1_ps(scale), vd0 = _mm256_set1_ps(d0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 dd = d ? _mm256_loadu_ps(d + i) : vd0;
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(p + i), _mm256_sub_ps(_mm256_loadu_ps(dp + i), dd));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(g, vs));
    }
    for (; i < n; i++) out[i] = p[i] * (dp[i] - (d ? d[i] : d0)) * scale;
}

// The RMSNorm rows: sums in 8 double lanes, the element-wise parts in the
// ref's operation order (the same bits given the same r and c).
static float rmsnorm_f32_avx2(int n, const float *x, const float *w, float eps, float *out) {
    float r = (float)(1.0 / sqrt(dot_f32_f64_avx2(n, x, x) / n + eps));
    const __m256 vr = _mm256_set1_ps(r);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vr), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * r * w[i];
    return r;
}

static void rmsnorm_backward_f32_avx2(int n, const float *dout, const float *x, const float *w, float r, float *dx) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {   // (double)dout * w * x, as the ref: both products in double
        __m256 d = _mm256_loadu_ps(dout + i), wv = _mm256_loadu_ps(w + i), xv = _mm256_loadu_ps(x + i);
        acc0 = _mm256_add_pd(acc0, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(d)),
                                                               _mm256_cvtps_pd(_mm256_castps256_ps128(wv))),
                                                 _mm256_cvtps_pd(_mm256_castps256_ps128(xv))));
        acc1 = _mm256_add_pd(acc1, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)),
                                                               _mm256_cvtps_pd(_mm256_extractf128_ps(wv, 1))),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1))));
    }
    double s = hsum_pd(acc0, acc1);
    for (; i < n; i++) s += (double)dout[i] * w[i] * x[i];
    float c = (float)(s * r * r * r / n);
    const __m256 vr = _mm256_set1_ps(r), vc = _mm256_set1_ps(c);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dout + i), _mm256_loadu_ps(w + i)), vr);
        g = _mm256_sub_ps(g, _mm256_mul_ps(vc, _mm256_loadu_ps(x + i)));
        _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
    }
    for (; i < n; i++) dx[i] += dout[i] * w[i] * r - c * x[i];
}

void qt_vecmath_set_avx2(qt_kernel_table *kt) {
    kt->exp_f32 = exp_f32_avx2;
    kt->max_f32 = max_f32_avx2;
    kt->exp_sum_f32 = exp_sum_f32_avx2;
    kt->swiglu_f32 = swiglu_f32_avx2;
    kt->swiglu_backward_f32 = swiglu_backward_f32_avx2;
    kt->dot_f32_f64 = dot_f32_f64_avx2;
    kt->softmax_grad_f32 = softmax_grad_f32_avx2;
    kt->rmsnorm_f32 = rmsnorm_f32_avx2;
    kt->rmsnorm_backward_f32 = rmsnorm_backward_f32_avx2;
}
