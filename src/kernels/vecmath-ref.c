// vecmath-ref.c: the ref table's element-wise math (exp, max, exp-sum,
// SwiGLU forward and backward, the double dot, the softmax gradient, RMSNorm
// rows forward and backward): plain loops over libm's expf, sums in double,
// in index order. These are the definitions the SIMD versions
// (vecmath-avx2.c, vecmath-neon.c) are tested against; they reproduce the
// loops the layers used before the kernels existed, bit for bit.
// Deliberately not fast. References: C99 expf, PyTorch F.silu.
#include <math.h>

#include "kernels/vecmath-internal.h"

static void exp_f32_ref(int n, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = expf(x[i]);
}

static float max_f32_ref(int n, const float *x) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static double exp_sum_f32_ref(int n, const float *x, float scale, float shift, float *y) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = expf(x[i] * scale - shift);
        if (y) y[i] = e;
        sum += e;
    }
    return sum;
}

static void swiglu_f32_ref(int n, const float *gate, const float *up, float *out) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void swiglu_backward_f32_ref(int n, const float *dout, const float *gate, const float *up, float *dgate,
                                    float *dup) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + expf(-g));
        if (dgate) dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        if (dup) dup[i] += dout[i] * (g * sig);
    }
}

static double dot_f32_f64_ref(int n, const float *x, const float *y) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * y[i];
    return s;
}

static void softmax_grad_f32_ref(int n, const float *p, const float *dp, const float *d, float d0, float scale,
                                 float *out) {
    for (int i = 0; i < n; i++) out[i] = p[i] * (dp[i] - (d ? d[i] : d0)) * scale;
}

static float rmsnorm_f32_ref(int n, const float *x, const float *w, float eps, float *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
    return r;
}

static void rmsnorm_backward_f32_ref(int n, const float *dout, const float *x, const float *w, float r, float *dx) {
    double s = 0;   // y_i = x_i r w_i, dr/dx_j = -r^3 x_j / n
    for (int i = 0; i < n; i++) s += (double)dout[i] * w[i] * x[i];
    float c = (float)(s * r * r * r / n);
    for (int i = 0; i < n; i++) dx[i] += dout[i] * w[i] * r - c * x[i];
}

void qt_vecmath_set_ref(qt_kernel_table *kt) {
    kt->exp_f32 = exp_f32_ref;
    kt->max_f32 = max_f32_ref;
    kt->exp_sum_f32 = exp_sum_f32_ref;
    kt->swiglu_f32 = swiglu_f32_ref;
    kt->swiglu_backward_f32 = swiglu_backward_f32_ref;
    kt->dot_f32_f64 = dot_f32_f64_ref;
    kt->softmax_grad_f32 = softmax_grad_f32_ref;
    kt->rmsnorm_f32 = rmsnorm_f32_ref;
    kt->rmsnorm_backward_f32 = rmsnorm_backward_f32_ref;
}
