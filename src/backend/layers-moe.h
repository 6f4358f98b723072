// layers-moe.h: the CPU backend's sparse mixture-of-experts layers (the
// moe_* operations of backend.h): Mixtral's router (softmax, top-k,
// renormalised weights), the gather of each token's rows into expert-grouped
// order and the weighted scatter-add back, each with its backward. Shapes: N
// tokens, E experts, K experts per token, C row width; pos (N, K) is the
// grouped row of (token, j-th expert) (backend.h). Work is split by token, so
// no two threads write one row and results do not depend on the thread count.
#ifndef QT_LAYERS_MOE_H
#define QT_LAYERS_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/kernels.h"

// w (N, K), ids (N, K) = renormalised top-k of softmax(logits (N, E)).
void qt_moe_route_forward(float *w, int32_t *ids, const float *logits, int64_t N, int E, int K, bool norm);
// dlogits (N, E) (written) given dw (N, K) and the forward's w, ids, logits.
void qt_moe_route_backward(float *dlogits, const float *dw, const float *w, const int32_t *ids, const float *logits,
                           int64_t N, int E, int K, bool norm);
// xg[pos[t*K+j]] = x[t]
void qt_moe_gather_forward(const qt_kctx *kc, float *xg, const float *x, const int32_t *pos, int64_t N, int K,
                           int64_t C);
// dx[t] += sum_j dxg[pos[t*K+j]]
void qt_moe_gather_backward(const qt_kctx *kc, float *dx, const float *dxg, const int32_t *pos, int64_t N, int K,
                            int64_t C);
// out[t] += sum_j w[t*K+j] y[pos[t*K+j]]
void qt_moe_combine_forward(const qt_kctx *kc, float *out, const float *y, const int32_t *pos, const float *w,
                            int64_t N, int K, int64_t C);
// dy[pos[t*K+j]] = w[t*K+j] dout[t], dw[t*K+j] = dout[t] . y[pos[t*K+j]] (written)
void qt_moe_combine_backward(const qt_kctx *kc, float *dy, float *dw, const float *dout, const float *y,
                             const int32_t *pos, const float *w, int64_t N, int K, int64_t C);

#endif
