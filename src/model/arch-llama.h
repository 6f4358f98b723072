// arch-llama.h: the Llama block (arch-llama.c), shared by the architectures
// that are Llama with other names or small variations (arch-qwen2.c: the
// same tensors with q/k/v biases required and NEOX RoPE in GGUF files).
#ifndef QT_ARCH_LLAMA_H
#define QT_ARCH_LLAMA_H

#include "model/arch.h"

// Per-layer tensor slots.
enum {
    QT_LLAMA_ATTN_NORM, QT_LLAMA_WQ, QT_LLAMA_WK, QT_LLAMA_WV, QT_LLAMA_WO,
    QT_LLAMA_BQ, QT_LLAMA_BK, QT_LLAMA_BV, QT_LLAMA_BO,
    QT_LLAMA_FFN_NORM, QT_LLAMA_WGATE, QT_LLAMA_WUP, QT_LLAMA_WDOWN,
    QT_LLAMA_N_TENSORS
};
// Linears (LoRA targets), in PEFT's usual order.
enum { QT_LLAMA_Q, QT_LLAMA_K, QT_LLAMA_V, QT_LLAMA_O, QT_LLAMA_GATE, QT_LLAMA_UP, QT_LLAMA_DOWN, QT_LLAMA_N_LINEARS };

extern const qt_tensor_desc qt_llama_globals[QT_G_FIRST_ARCH];
extern const qt_tensor_desc qt_llama_tensors[QT_LLAMA_N_TENSORS];
extern const qt_linear_desc qt_llama_linears[QT_LLAMA_N_LINEARS];
// Per-token buffers of the layer (arch.h: acts, work, grads).
enum { QT_LLAMA_N_ACTS = 10, QT_LLAMA_N_WORK = 2, QT_LLAMA_N_GRADS = 9 };
extern const qt_dim qt_llama_acts[QT_LLAMA_N_ACTS], qt_llama_work[QT_LLAMA_N_WORK], qt_llama_grads[QT_LLAMA_N_GRADS];
// The acts the backward can recompute (arch.h act_recompute): q, k, v, gate, up.
#define QT_LLAMA_ACT_RECOMPUTE 0x30Eu
extern const char *const qt_llama_hf_acts[];

void qt_llama_layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                            const float *x, float *out);
void qt_llama_layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                             float *const *ax, const float *x, const float *dout, float *dx);

extern const qt_arch_desc qt_arch_llama;

#endif
