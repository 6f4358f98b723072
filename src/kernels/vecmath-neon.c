// vecmath-neon.c: element-wise math for the NEON table (exp, max, exp-sum,
// SwiGLU forward and backward), 4 floats at a time. The same algorithm and
// operation order as vecmath-avx2.c (see there: Cody-Waite reduction, Cephes
// expf polynomial, 2^n as two factors, clamp to [-104, 89]), so the two
// tables give the same exp bit for bit. A ragged tail goes through the same
// vector code via a padded buffer. Deliberately not: a table-driven exp, the
// SVE or fp16 variants. References: Cephes expf.c, ARM optimized-routines expf.
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/vecmath-internal.h"

static inline float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vdupq_n_f32(89.0f), vmaxq_f32(vdupq_n_f32(-104.0f), x));   // FMAX/FMIN keep NaN
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));   // x - n ln2_hi
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(r, p, vmulq_f32(r, r));
    p = vaddq_f32(p, vdupq_n_f32(1.0f));
    int32x4_t ni = vcvtq_s32_f32(n);   // n is already integral
    int32x4_t e1 = vshrq_n_s32(ni, 1), e2 = vsubq_s32(ni, e1);
    const int32x4_t bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(e1, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(e2, bias), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

static void exp_f32_neon(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp4(vld1q_f32(x + i)));
    if (i < n) {
        float b[4] = {0};
        memcpy(b, x + i, sizeof(float) * (n - i));
        vst1q_f32(b, exp4(vld1q_f32(b)));
        memcpy(y + i, b, sizeof(float) * (n - i));
    }
}

static float max_f32_neon(int n, const float *x) {
    float mx = -INFINITY;
    int i = 0;
    if (n >= 4) {
        float32x4_t m = vld1q_f32(x);
        for (i = 4; i + 4 <= n; i += 4) m = vmaxnmq_f32(m, vld1q_f32(x + i));   // a NaN in x is skipped
        float b[4];
        vst1q_f32(b, m);
        for (int k = 0; k < 4; k++) mx = b[k] > mx ? b[k] : mx;
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static double exp_sum_f32_neon(int n, const float *x, float scale, float shift, float *y) {
    const float32x4_t vs = vdupq_n_f32(scale), vsh = vdupq_n_f32(shift);
    float64x2_t acc0 = vdupq_n_f64(0), acc1 = vdupq_n_f64(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vmulq_f32(vld1q_f32(x + i), vs), vsh));
        if (y) vst1q_f32(y + i, e);
        acc0 = vaddq_f64(acc0, vcvt_f64_f32(vget_low_f32(e)));
        acc1 = vaddq_f64(acc1, vcvt_high_f64_f32(e));
    }
    float64x2_t a = vaddq_f64(acc0, acc1);
    double sum = vgetq_lane_f64(a, 0) + vgetq_lane_f64(a, 1);
    if (i < n) {
        float b[4] = {0};
        memcpy(b, x + i, sizeof(float) * (n - i));
        vst1q_f32(b, exp4(vsubq_f32(vmulq_f32(vld1q_f32(b), vs), vsh)));
        for (int k = 0; k < n - i; k++) sum += b[k];
        if (y) memcpy(y + i, b, sizeof(float) * (n - i));
    }
    return sum;
}

static inline float32x4_t swiglu4(float32x4_t g, float32x4_t u) {
    float32x4_t e = exp4(vnegq_f32(g));
    return vmulq_f32(vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), e)), u);
}

static void swiglu_f32_neon(int n, const float *gate, const float *up, float *out) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, swiglu4(vld1q_f32(gate + i), vld1q_f32(up + i)));
    if (i < n) {
        float g[4] = {0}, u[4] = {0};
        memcpy(g, gate + i, sizeof(float) * (n - i));
        memcpy(u, up + i, sizeof(float) * (n - i));
        vst1q_f32(g, swiglu4(vld1q_f32(g), vld1q_f32(u)));
        memcpy(out + i, g, sizeof(float) * (n - i));
    }
}

// one block of 4: dgate += dout * up * sig * (1 + g (1 - sig)), dup += dout * (g sig)
static inline void swiglu_bwd4(const float *dout, const float *gate, const float *up, float *dgate, float *dup) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t g = vld1q_f32(gate), d = vld1q_f32(dout);
    float32x4_t sig = vdivq_f32(one, vaddq_f32(one, exp4(vnegq_f32(g))));
    if (dgate) {
        float32x4_t t = vmulq_f32(vmulq_f32(d, vld1q_f32(up)), sig);
        t = vmulq_f32(t, vaddq_f32(one, vmulq_f32(g, vsubq_f32(one, sig))));
        vst1q_f32(dgate, vaddq_f32(vld1q_f32(dgate), t));
    }
    if (dup) vst1q_f32(dup, vaddq_f32(vld1q_f32(dup), vmulq_f32(d, vmulq_f32(g, sig))));
}

static void swiglu_backward_f32_neon(int n, const float *dout, const float *gate, const float *up, float *dgate,
                                     float *dup) {
    int i = 0;
    for (; i + 4 <= n; i += 4) swiglu_bwd4(dout + i, gate + i, up + i, dgate ? dgate + i : NULL, dup ? dup + i : NULL);
    if (i < n) {
        int k = n - i;
        float d[4] = {0}, g[4] = {0}, u[4] = {0}, dg[4] = {0}, du[4] = {0};
        memcpy(d, dout + i, sizeof(float) * k);
        memcpy(g, gate + i, sizeof(float) * k);
        memcpy(u, up + i, sizeof(float) * k);
        if (dgate) memcpy(dg, dgate + i, sizeof(float) * k);
        if (dup) memcpy(du, dup + i, sizeof(float) * k);
        swiglu_bwd4(d, g, u, dgate ? dg : NULL, dup ? du : NULL);
        if (dgate) memcpy(dgate + i, dg, sizeof(float) * k);
        if (dup) memcpy(dup + i, du, sizeof(float) * k);
    }
}

void qt_vecmath_set_neon(qt_kernel_table *kt) {
    kt->exp_f32 = exp_f32_neon;
    kt->max_f32 = max_f32_neon;
    kt->exp_sum_f32 = exp_sum_f32_neon;
    kt->swiglu_f32 = swiglu_f32_neon;
    kt->swiglu_backward_f32 = swiglu_backward_f32_neon;
}
