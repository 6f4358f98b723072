// layers-norm-act.h: the CPU backend's LayerNorm (with bias) and GELU
// family (tanh approximation: GPT-2's gelu_new, Gemma's gelu_pytorch_tanh,
// and the GeGLU gate gelu(gate) * up), forward and backward, llm.c style:
// outputs first, then saved tensors, inputs, parameters, dimensions.
// Backward passes ACCUMULATE (+=) into their gradient outputs, as in
// layers-train.h. backend-cpu.c wraps them into the qt_backend_ops table.
#ifndef QT_LAYERS_NORM_ACT_H
#define QT_LAYERS_NORM_ACT_H

#include <stdint.h>

#include "kernels/kernels.h"

// out (T, C) = (x - mean) / sqrt(var + eps) * w + b (b may be NULL), the
// biased variance (torch.nn.functional.layer_norm); rstd (T) saved unless NULL.
void qt_layernorm_forward(float *out, float *rstd, const float *x, const float *w, const float *b, int64_t T,
                          int64_t C, float eps);
// dx (T, C) += backward of qt_layernorm_forward given dout; the mean is
// recomputed from x, rstd is the forward's.
void qt_layernorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                           int64_t T, int64_t C);

// out (n) = gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (out may alias x).
void qt_gelu_forward(const qt_kctx *kc, float *out, const float *x, int64_t n);
// dx (n) += dout * gelu'(x)
void qt_gelu_backward(const qt_kctx *kc, float *dx, const float *dout, const float *x, int64_t n);
// out (n) = gelu(gate) * up
void qt_geglu_forward(const qt_kctx *kc, float *out, const float *gate, const float *up, int64_t n);
// dgate (n) += dout * up * gelu'(gate), dup (n) += dout * gelu(gate) (either may be NULL)
void qt_geglu_backward(const qt_kctx *kc, float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n);

#endif
