// arch-llama.c: the Llama architecture (Llama 2/3, TinyLlama, Mistral,
// SmolLM): pre-norm decoder layers of RMSNorm, grouped-query attention with
// RoPE, and a SwiGLU MLP (GeGLU where the description says: Gemma, arch-gemma.c).
// One definition for inference and training:
//   xn  = rmsnorm(x)              q,k,v = lin(xn) (+ bias), rope(q, k)
//   ao  = attn(q, k, v)           xmid  = x + lin_o(ao)
//   xn  = rmsnorm(xmid)           h     = silu(lin_gate(xn)) * lin_up(xn)
//   out = xmid + lin_down(h)
// The backward recomputes the cheap temporaries (both xn, h) instead of
// keeping them per layer, and with qt_fwd.recompute also q, k, v and the
// MLP's gate and up (their linears run again: ~5/8 of the layer's forward
// FLOPs for ~4/5 less kept memory).
// References: transformers LlamaForCausalLM / MistralForCausalLM (HF names,
// attention_bias), llama.cpp's llm_build_llama (GGUF names); PyTorch autograd
// (tests/ref/) for the backward.
#include "model/arch-llama.h"

#include "base/base.h"
#include "model/engine.h"
#include "model/model.h"

const qt_tensor_desc qt_llama_globals[QT_G_FIRST_ARCH] = {
    [QT_G_TOK_EMBD] = { "token_embd.weight", "model.embed_tokens.weight", QT_D_C, QT_D_V, 0 },
    [QT_G_OUT_NORM] = { "output_norm.weight", "model.norm.weight", QT_D_C, QT_D_1, QT_TF_VEC },
    [QT_G_OUTPUT] = { "output.weight", "lm_head.weight", QT_D_C, QT_D_V, QT_TF_OPTIONAL },
};

const qt_tensor_desc qt_llama_tensors[QT_LLAMA_N_TENSORS] = {
    QT_LLAMA_ATTN_TENSORS,
    [QT_LLAMA_WGATE] = { QT_LLAMA_LAYER_T("ffn_gate.weight", "mlp.gate_proj.weight"), QT_D_C, QT_D_F, 0 },
    [QT_LLAMA_WUP] = { QT_LLAMA_LAYER_T("ffn_up.weight", "mlp.up_proj.weight"), QT_D_C, QT_D_F, 0 },
    [QT_LLAMA_WDOWN] = { QT_LLAMA_LAYER_T("ffn_down.weight", "mlp.down_proj.weight"), QT_D_F, QT_D_C, 0 },
};

const qt_linear_desc qt_llama_linears[QT_LLAMA_N_LINEARS] = {
    QT_LLAMA_ATTN_LINEARS,
    [QT_LLAMA_GATE] = { "gate", "model.layers.%d.mlp.gate_proj", "ffn_gate", QT_LLAMA_WGATE, -1, QT_LIN_PLAIN },
    [QT_LLAMA_UP] = { "up", "model.layers.%d.mlp.up_proj", "ffn_up", QT_LLAMA_WUP, -1, QT_LIN_PLAIN },
    [QT_LLAMA_DOWN] = { "down", "model.layers.%d.mlp.down_proj", "ffn_down", QT_LLAMA_WDOWN, -1, QT_LIN_PLAIN },
};

// Activations kept per layer for the backward (per token); the attention
// half's come first (arch-llama.h).
enum { A_RSTD1, A_Q, A_K, A_V, A_AO, A_LSE, A_XMID, A_RSTD2, A_GATE, A_UP, N_ACTS };
_Static_assert((int)N_ACTS == (int)QT_LLAMA_N_ACTS, "arch-llama.h's count");
_Static_assert((int)A_RSTD2 == (int)QT_LLAMA_ATTN_N_ACTS && (int)A_XMID == (int)QT_LLAMA_A_XMID, "attention half");
const qt_dim qt_llama_acts[N_ACTS] = {
    QT_LLAMA_ATTN_ACT_DIMS, [A_RSTD2] = QT_D_1, [A_GATE] = QT_D_F, [A_UP] = QT_D_F,
};
// Forward temporaries: normed input of a sub-layer, the MLP's hidden.
enum { W_XN, W_H, N_WORK };
_Static_assert((int)N_WORK == (int)QT_LLAMA_N_WORK, "arch-llama.h's count");
_Static_assert((int)W_XN == (int)QT_LLAMA_W_XN && (int)W_H == (int)QT_LLAMA_ATTN_N_WORK, "attention half");
const qt_dim qt_llama_work[N_WORK] = { [W_XN] = QT_D_C, [W_H] = QT_D_F };
// Backward gradients.
enum { G_DXN, G_DQ, G_DK, G_DV, G_DAO, G_DXMID, G_DGATE, G_DUP, G_DH, N_GRADS };
_Static_assert((int)N_GRADS == (int)QT_LLAMA_N_GRADS, "arch-llama.h's count");
_Static_assert((int)G_DXN == (int)QT_LLAMA_G_DXN && (int)G_DXMID == (int)QT_LLAMA_G_DXMID &&
                   (int)G_DGATE == (int)QT_LLAMA_ATTN_N_GRADS,
               "attention half");
// What the backward can recompute from the layer input (see file comment).
#define LLAMA_RECOMPUTE ((1u << A_Q) | (1u << A_K) | (1u << A_V) | (1u << A_GATE) | (1u << A_UP))
_Static_assert(LLAMA_RECOMPUTE == QT_LLAMA_ACT_RECOMPUTE, "arch-llama.h's mask");
_Static_assert((LLAMA_RECOMPUTE & ((1u << QT_LLAMA_ATTN_N_ACTS) - 1)) == QT_LLAMA_ATTN_ACT_RECOMPUTE, "attention half");
const qt_dim qt_llama_grads[N_GRADS] = {
    QT_LLAMA_ATTN_GRAD_DIMS, [G_DGATE] = QT_D_F, [G_DUP] = QT_D_F, [G_DH] = QT_D_F,
};

const char *const qt_llama_hf_acts[] = { "silu", NULL };

#define TENSOR(slot) qt_model_tensor(f->m, il, (slot))

// h (n) = act(gate) * up with the architecture's gated activation (SwiGLU;
// GeGLU for Gemma), and its backward (dgate, dup += ).
static void glu(const qt_fwd *f, float *h, const float *gate, const float *up, int64_t n) {
    if (f->m->arch->ffn_act == QT_FFN_GELU_TANH) f->be->ops->geglu(f->be, h, gate, up, n);
    else f->be->ops->swiglu(f->be, h, gate, up, n);
}

static void glu_backward(const qt_fwd *f, float *dgate, float *dup, const float *dh, const float *gate,
                         const float *up, int64_t n) {
    if (f->m->arch->ffn_act == QT_FFN_GELU_TANH) f->be->ops->geglu_backward(f->be, dgate, dup, dh, gate, up, n);
    else f->be->ops->swiglu_backward(f->be, dgate, dup, dh, gate, up, n);
}

void qt_llama_attn_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                           const float *x) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;
    const int NH = c->n_head, NKV = c->n_head_kv, HS = c->head_dim;
    be->ops->rmsnorm(be, W[W_XN], A[A_RSTD1], x, TENSOR(QT_LLAMA_ATTN_NORM), N, C, c->rms_eps);
    qt_linear_forward(f, il, 3, (const int[]){ QT_LLAMA_Q, QT_LLAMA_K, QT_LLAMA_V },
                      (float *const[]){ A[A_Q], A[A_K], A[A_V] }, W[W_XN], ax);
    be->ops->rope(be, A[A_Q], f->cs, N, NH, HS, c->rope_type, false);
    be->ops->rope(be, A[A_K], f->cs, N, NKV, HS, c->rope_type, false);
    be->ops->attention(be, A[A_AO], A[A_LSE], A[A_Q], A[A_K], A[A_V], f->seqs, f->kv, il, NH, NKV, HS);
    qt_linear_forward(f, il, 1, (const int[]){ QT_LLAMA_O }, (float *const[]){ A[A_XMID] }, A[A_AO], ax);
    be->ops->axpy(be, N * C, 1.0f, x, A[A_XMID]);
}

void qt_llama_layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                            const float *x, float *out) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;
    qt_llama_attn_forward(f, il, A, W, ax, x);
    // MLP
    be->ops->rmsnorm(be, W[W_XN], A[A_RSTD2], A[A_XMID], TENSOR(QT_LLAMA_FFN_NORM), N, C, c->rms_eps);
    qt_linear_forward(f, il, 2, (const int[]){ QT_LLAMA_GATE, QT_LLAMA_UP }, (float *const[]){ A[A_GATE], A[A_UP] },
                      W[W_XN], ax);
    glu(f, W[W_H], A[A_GATE], A[A_UP], N * c->n_ff);
    qt_linear_forward(f, il, 1, (const int[]){ QT_LLAMA_DOWN }, (float *const[]){ out }, W[W_H], ax);
    be->ops->axpy(be, N * C, 1.0f, A[A_XMID], out);
}

void qt_llama_layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                             float *const *ax, const float *x, const float *dout, float *dx) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd, F = c->n_ff;
    const size_t nC = sizeof(float) * (size_t)(N * C), nF = sizeof(float) * (size_t)(N * F);

    if (f->recompute) {   // gate and up were not kept: run their linears again (q, k, v: the attention half)
        be->ops->rmsnorm(be, W[W_XN], NULL, A[A_XMID], TENSOR(QT_LLAMA_FFN_NORM), N, C, c->rms_eps);
        qt_linear_forward(f, il, 2, (const int[]){ QT_LLAMA_GATE, QT_LLAMA_UP },
                          (float *const[]){ A[A_GATE], A[A_UP] }, W[W_XN], ax);
    }

    // MLP: recompute xn = rmsnorm(xmid) and h = silu(gate) * up
    be->ops->rmsnorm(be, W[W_XN], NULL, A[A_XMID], TENSOR(QT_LLAMA_FFN_NORM), N, C, c->rms_eps);
    glu(f, W[W_H], A[A_GATE], A[A_UP], N * F);
    be->ops->zero(be, G[G_DH], nF);
    qt_linear_backward(f, il, QT_LLAMA_DOWN, G[G_DH], dout, W[W_H], ax ? ax[QT_LLAMA_DOWN] : NULL);
    be->ops->zero(be, G[G_DGATE], nF);
    be->ops->zero(be, G[G_DUP], nF);
    glu_backward(f, G[G_DGATE], G[G_DUP], G[G_DH], A[A_GATE], A[A_UP], N * F);
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, QT_LLAMA_GATE, G[G_DXN], G[G_DGATE], W[W_XN], ax ? ax[QT_LLAMA_GATE] : NULL);
    qt_linear_backward(f, il, QT_LLAMA_UP, G[G_DXN], G[G_DUP], W[W_XN], ax ? ax[QT_LLAMA_UP] : NULL);
    be->ops->copy(be, G[G_DXMID], dout, nC);
    be->ops->rmsnorm_backward(be, G[G_DXMID], G[G_DXN], A[A_XMID], TENSOR(QT_LLAMA_FFN_NORM), A[A_RSTD2], N, C);
    qt_llama_attn_backward(f, il, A, W, G, ax, x, dx);
}

void qt_llama_attn_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                            float *const *ax, const float *x, float *dx) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;
    const int NH = c->n_head, NKV = c->n_head_kv, HS = c->head_dim;
    const size_t nC = sizeof(float) * (size_t)(N * C);
    const size_t nQ = sizeof(float) * (size_t)(N * NH * HS), nKV = sizeof(float) * (size_t)(N * NKV * HS);
    if (f->recompute) {   // q, k, v (after RoPE) were not kept: run their linears again
        be->ops->rmsnorm(be, W[W_XN], NULL, x, TENSOR(QT_LLAMA_ATTN_NORM), N, C, c->rms_eps);
        qt_linear_forward(f, il, 3, (const int[]){ QT_LLAMA_Q, QT_LLAMA_K, QT_LLAMA_V },
                          (float *const[]){ A[A_Q], A[A_K], A[A_V] }, W[W_XN], ax);
        be->ops->rope(be, A[A_Q], f->cs, N, NH, HS, c->rope_type, false);
        be->ops->rope(be, A[A_K], f->cs, N, NKV, HS, c->rope_type, false);
    }
    be->ops->zero(be, G[G_DAO], nQ);
    qt_linear_backward(f, il, QT_LLAMA_O, G[G_DAO], G[G_DXMID], A[A_AO], ax ? ax[QT_LLAMA_O] : NULL);
    be->ops->zero(be, G[G_DQ], nQ);
    be->ops->zero(be, G[G_DK], nKV);
    be->ops->zero(be, G[G_DV], nKV);
    be->ops->attention_backward(be, G[G_DQ], G[G_DK], G[G_DV], G[G_DAO], A[A_AO], A[A_LSE], A[A_Q], A[A_K], A[A_V],
                                f->seqs, NH, NKV, HS);
    be->ops->rope(be, G[G_DQ], f->cs, N, NH, HS, c->rope_type, true);
    be->ops->rope(be, G[G_DK], f->cs, N, NKV, HS, c->rope_type, true);
    be->ops->rmsnorm(be, W[W_XN], NULL, x, TENSOR(QT_LLAMA_ATTN_NORM), N, C, c->rms_eps);
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, QT_LLAMA_Q, G[G_DXN], G[G_DQ], W[W_XN], ax ? ax[QT_LLAMA_Q] : NULL);
    qt_linear_backward(f, il, QT_LLAMA_K, G[G_DXN], G[G_DK], W[W_XN], ax ? ax[QT_LLAMA_K] : NULL);
    qt_linear_backward(f, il, QT_LLAMA_V, G[G_DXN], G[G_DV], W[W_XN], ax ? ax[QT_LLAMA_V] : NULL);
    be->ops->copy(be, dx, G[G_DXMID], nC);
    be->ops->rmsnorm_backward(be, dx, G[G_DXN], x, TENSOR(QT_LLAMA_ATTN_NORM), A[A_RSTD1], N, C);
}

static const char *const gguf_names[] = { "llama", NULL };
static const char *const hf_names[] = { "llama", "mistral", NULL };

const qt_arch_desc qt_arch_llama = {
    .name = "llama",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = qt_llama_hf_acts,
    .gguf_rope = QT_ROPE_NORM,
    .globals = qt_llama_globals,
    .n_globals = QT_G_FIRST_ARCH,
    .layer = qt_llama_tensors,
    .n_layer_tensors = QT_LLAMA_N_TENSORS,
    .linears = qt_llama_linears,
    .n_linears = QT_LLAMA_N_LINEARS,
    .default_targets = (1u << QT_LLAMA_Q) | (1u << QT_LLAMA_V),
    .acts = qt_llama_acts,
    .n_acts = N_ACTS,
    .work = qt_llama_work,
    .n_work = N_WORK,
    .grads = qt_llama_grads,
    .n_grads = N_GRADS,
    .act_recompute = LLAMA_RECOMPUTE,
    .layer_forward = qt_llama_layer_forward,
    .layer_backward = qt_llama_layer_backward,
};
