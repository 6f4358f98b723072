// arch-llama.h: the Llama block (arch-llama.c), shared by the architectures
// that are Llama with other names or small variations (arch-qwen2.c: the
// same tensors with q/k/v biases required and NEOX RoPE in GGUF files), and
// its attention half, shared by those with another MLP (arch-mixtral.c).
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

// The attention half's table entries (slots QT_LLAMA_ATTN_NORM .. BO and
// FFN_NORM, linears q, k, v, o), for the tables of architectures that reuse it.
#define QT_LLAMA_LAYER_T(gguf, hf) "blk.%d." gguf, "model.layers.%d." hf
#define QT_LLAMA_ATTN_TENSORS                                                                                        \
    [QT_LLAMA_ATTN_NORM] = { QT_LLAMA_LAYER_T("attn_norm.weight", "input_layernorm.weight"), QT_D_C, QT_D_1,           \
                             QT_TF_VEC },                                                                             \
    [QT_LLAMA_WQ] = { QT_LLAMA_LAYER_T("attn_q.weight", "self_attn.q_proj.weight"), QT_D_C, QT_D_QD, 0 },              \
    [QT_LLAMA_WK] = { QT_LLAMA_LAYER_T("attn_k.weight", "self_attn.k_proj.weight"), QT_D_C, QT_D_KVD, 0 },             \
    [QT_LLAMA_WV] = { QT_LLAMA_LAYER_T("attn_v.weight", "self_attn.v_proj.weight"), QT_D_C, QT_D_KVD, 0 },             \
    [QT_LLAMA_WO] = { QT_LLAMA_LAYER_T("attn_output.weight", "self_attn.o_proj.weight"), QT_D_QD, QT_D_C, 0 },         \
    [QT_LLAMA_BQ] = { QT_LLAMA_LAYER_T("attn_q.bias", "self_attn.q_proj.bias"), QT_D_QD, QT_D_1,                       \
                      QT_TF_VEC | QT_TF_OPTIONAL },                                                                   \
    [QT_LLAMA_BK] = { QT_LLAMA_LAYER_T("attn_k.bias", "self_attn.k_proj.bias"), QT_D_KVD, QT_D_1,                      \
                      QT_TF_VEC | QT_TF_OPTIONAL },                                                                   \
    [QT_LLAMA_BV] = { QT_LLAMA_LAYER_T("attn_v.bias", "self_attn.v_proj.bias"), QT_D_KVD, QT_D_1,                      \
                      QT_TF_VEC | QT_TF_OPTIONAL },                                                                   \
    [QT_LLAMA_BO] = { QT_LLAMA_LAYER_T("attn_output.bias", "self_attn.o_proj.bias"), QT_D_C, QT_D_1,                   \
                      QT_TF_VEC | QT_TF_OPTIONAL },                                                                   \
    [QT_LLAMA_FFN_NORM] = { QT_LLAMA_LAYER_T("ffn_norm.weight", "post_attention_layernorm.weight"), QT_D_C, QT_D_1,   \
                            QT_TF_VEC }
#define QT_LLAMA_ATTN_LINEARS                                                                                        \
    [QT_LLAMA_Q] = { "q", "model.layers.%d.self_attn.q_proj", "attn_q", QT_LLAMA_WQ, QT_LLAMA_BQ, QT_LIN_ROPE_Q },     \
    [QT_LLAMA_K] = { "k", "model.layers.%d.self_attn.k_proj", "attn_k", QT_LLAMA_WK, QT_LLAMA_BK, QT_LIN_ROPE_K },     \
    [QT_LLAMA_V] = { "v", "model.layers.%d.self_attn.v_proj", "attn_v", QT_LLAMA_WV, QT_LLAMA_BV, QT_LIN_PLAIN },      \
    [QT_LLAMA_O] = { "o", "model.layers.%d.self_attn.o_proj", "attn_output", QT_LLAMA_WO, QT_LLAMA_BO, QT_LIN_PLAIN }

extern const qt_tensor_desc qt_llama_globals[QT_G_FIRST_ARCH];
extern const qt_tensor_desc qt_llama_tensors[QT_LLAMA_N_TENSORS];
extern const qt_linear_desc qt_llama_linears[QT_LLAMA_N_LINEARS];
// Per-token buffers of the layer (arch.h: acts, work, grads).
enum { QT_LLAMA_N_ACTS = 10, QT_LLAMA_N_WORK = 2, QT_LLAMA_N_GRADS = 9 };
extern const qt_dim qt_llama_acts[QT_LLAMA_N_ACTS], qt_llama_work[QT_LLAMA_N_WORK], qt_llama_grads[QT_LLAMA_N_GRADS];
// The acts the backward can recompute (arch.h act_recompute): q, k, v, gate, up.
#define QT_LLAMA_ACT_RECOMPUTE 0x30Eu
extern const char *const qt_llama_hf_acts[];

// The attention half, x -> xmid = x + o(attn(rmsnorm(x))), for an
// architecture whose layer reuses it: its acts, work and grads tables begin
// with the half's entries (the dims below), so the half finds its buffers at
// the same indices; xmid is acts[QT_LLAMA_A_XMID], the normed input work
// [QT_LLAMA_W_XN]; the backward takes d loss / d xmid in grads[QT_LLAMA_G_DXMID]
// and writes dx (N, C).
enum {
    QT_LLAMA_ATTN_N_ACTS = 7, QT_LLAMA_A_XMID = 6,
    QT_LLAMA_ATTN_N_WORK = 1, QT_LLAMA_W_XN = 0,
    QT_LLAMA_ATTN_N_GRADS = 6, QT_LLAMA_G_DXN = 0, QT_LLAMA_G_DXMID = 5,
};
#define QT_LLAMA_ATTN_ACT_DIMS QT_D_1, QT_D_QD, QT_D_KVD, QT_D_KVD, QT_D_QD, QT_D_NH, QT_D_C   // rstd, q, k, v, ao, lse, xmid
#define QT_LLAMA_ATTN_GRAD_DIMS QT_D_C, QT_D_QD, QT_D_KVD, QT_D_KVD, QT_D_QD, QT_D_C          // dxn, dq, dk, dv, dao, dxmid
// The half's acts its backward recomputes under qt_fwd.recompute (arch.h act_recompute): q, k, v.
#define QT_LLAMA_ATTN_ACT_RECOMPUTE 0xEu
void qt_llama_attn_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                           const float *x);
void qt_llama_attn_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                            float *const *ax, const float *x, float *dx);

void qt_llama_layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                            const float *x, float *out);
void qt_llama_layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                             float *const *ax, const float *x, const float *dout, float *dx);

extern const qt_arch_desc qt_arch_llama;

#endif
