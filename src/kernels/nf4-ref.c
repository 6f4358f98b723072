// nf4-ref.c: the scalar NF4 dot product (nf4-kernels.h), the oracle the AVX2
// kernels are tested against: each weight dequantized exactly as
// qt_dequantize_row_nf4 does (code[q] * d), products summed in float in
// element order.
#include "kernels/nf4-kernels.h"
#include "quant/nf4.h"

void qt_vec_dot_nf4_ref(int n, float *s, const void *vx, const void *vy) {
    const block_nf4 *x = vx;
    const float *y = vy;
    float sum = 0;
    for (int i = 0; i < n / QK_NF4; i++, y += QK_NF4)
        for (int j = 0; j < QK_NF4 / 2; j++) {
            sum += qt_nf4_values[x[i].qs[j] >> 4] * x[i].d * y[2 * j];
            sum += qt_nf4_values[x[i].qs[j] & 15] * x[i].d * y[2 * j + 1];
        }
    *s = sum;
}
