// arch-phi3.c: Phi-3 (Phi3ForCausalLM, the 4k-context variants): the Llama
// block with two fused projections, as both transformers and llama.cpp
// store them:
//   q|k|v   = qkv_proj(xn)       (rows: q, then k, then v; GQA)
//   gate|up = gate_up_proj(xn)   (rows: gate, then up), h = silu(gate) * up
// LoRA adapts each fused projection as one Linear of the fused width, as
// PEFT does (target "qkv_proj": lora_B (n_head*HS + 2*n_head_kv*HS, r)).
// RoPE is rotate_half (NEOX) in both formats, so nothing is permuted. The
// config's sliding_window caps the context (QT_ARCH_SWA: up to it the window
// masks nothing, so the results equal transformers'); longrope / su scaling
// (the 128k variants) is refused by the loader.
// References: transformers modeling_phi3.py (Phi3Attention, Phi3MLP);
// llama.cpp's llm_build_phi3 (attn_qkv, ffn_up of 2 n_ff rows) and
// convert_hf_to_gguf.py Phi3MiniModel.
#include "model/arch-llama.h"
#include "model/engine.h"
#include "model/model.h"

enum { T_ATTN_NORM, T_QKV, T_O, T_FFN_NORM, T_GATE_UP, T_DOWN, N_TENSORS };

#define LAYER_T(gguf, hf) "blk.%d." gguf, "model.layers.%d." hf
static const qt_tensor_desc tensors[N_TENSORS] = {
    [T_ATTN_NORM] = { LAYER_T("attn_norm.weight", "input_layernorm.weight"), QT_D_C, QT_D_1, QT_TF_VEC },
    [T_QKV] = { LAYER_T("attn_qkv.weight", "self_attn.qkv_proj.weight"), QT_D_C, QT_D_QKV, 0 },
    [T_O] = { LAYER_T("attn_output.weight", "self_attn.o_proj.weight"), QT_D_QD, QT_D_C, 0 },
    [T_FFN_NORM] = { LAYER_T("ffn_norm.weight", "post_attention_layernorm.weight"), QT_D_C, QT_D_1, QT_TF_VEC },
    [T_GATE_UP] = { LAYER_T("ffn_up.weight", "mlp.gate_up_proj.weight"), QT_D_C, QT_D_2F, 0 },
    [T_DOWN] = { LAYER_T("ffn_down.weight", "mlp.down_proj.weight"), QT_D_F, QT_D_C, 0 },
};
#undef LAYER_T

enum { L_QKV, L_O, L_GATE_UP, L_DOWN, N_LINEARS };
static const qt_linear_desc linears[N_LINEARS] = {
    [L_QKV] = { "qkv", "model.layers.%d.self_attn.qkv_proj", "attn_qkv", T_QKV, -1, QT_LIN_PLAIN },
    [L_O] = { "o", "model.layers.%d.self_attn.o_proj", "attn_output", T_O, -1, QT_LIN_PLAIN },
    [L_GATE_UP] = { "gate_up", "model.layers.%d.mlp.gate_up_proj", "ffn_up", T_GATE_UP, -1, QT_LIN_PLAIN },
    [L_DOWN] = { "down", "model.layers.%d.mlp.down_proj", "ffn_down", T_DOWN, -1, QT_LIN_PLAIN },
};

// Activations kept per layer: the Llama block's.
enum { A_RSTD1, A_Q, A_K, A_V, A_AO, A_LSE, A_XMID, A_RSTD2, A_GATE, A_UP, N_ACTS };
_Static_assert((int)N_ACTS == (int)QT_LLAMA_N_ACTS, "the Llama block's activations");
// Forward temporaries: normed input, the MLP's hidden, the two fused outputs.
enum { W_XN, W_H, W_QKV, W_GU, N_WORK };
static const qt_dim work[N_WORK] = { [W_XN] = QT_D_C, [W_H] = QT_D_F, [W_QKV] = QT_D_QKV, [W_GU] = QT_D_2F };
// Backward gradients.
enum { G_DXN, G_DQ, G_DK, G_DV, G_DAO, G_DXMID, G_DGATE, G_DUP, G_DH, G_DQKV, G_DGU, N_GRADS };
static const qt_dim grads[N_GRADS] = {
    [G_DXN] = QT_D_C, [G_DQ] = QT_D_QD, [G_DK] = QT_D_KVD, [G_DV] = QT_D_KVD, [G_DAO] = QT_D_QD,
    [G_DXMID] = QT_D_C, [G_DGATE] = QT_D_F, [G_DUP] = QT_D_F, [G_DH] = QT_D_F, [G_DQKV] = QT_D_QKV,
    [G_DGU] = QT_D_2F,
};

#define TENSOR(slot) qt_model_tensor(f->m, il, (slot))
#define QKV_WIDTHS(c) ((const int64_t[]){ (int64_t)(c)->n_head * (c)->head_dim, \
                                          (int64_t)(c)->n_head_kv * (c)->head_dim, \
                                          (int64_t)(c)->n_head_kv * (c)->head_dim })
#define GU_WIDTHS(c) ((const int64_t[]){ (c)->n_ff, (c)->n_ff })

static void layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax, const float *x,
                          float *out) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;

    be->ops->rmsnorm(be, W[W_XN], A[A_RSTD1], x, TENSOR(T_ATTN_NORM), N, C, c->rms_eps);
    qt_linear_forward(f, il, 1, (const int[]){ L_QKV }, (float *const[]){ W[W_QKV] }, W[W_XN], ax);
    qt_fused_split(f, W[W_QKV], 3, QKV_WIDTHS(c), (float *const[]){ A[A_Q], A[A_K], A[A_V] });
    be->ops->rope(be, A[A_Q], f->cs, N, c->n_head, c->head_dim, c->rope_type, false);
    be->ops->rope(be, A[A_K], f->cs, N, c->n_head_kv, c->head_dim, c->rope_type, false);
    qt_attention_block_forward(f, il, L_O, A[A_AO], A[A_LSE], A[A_Q], A[A_K], A[A_V], x, A[A_XMID], ax);

    be->ops->rmsnorm(be, W[W_XN], A[A_RSTD2], A[A_XMID], TENSOR(T_FFN_NORM), N, C, c->rms_eps);
    qt_linear_forward(f, il, 1, (const int[]){ L_GATE_UP }, (float *const[]){ W[W_GU] }, W[W_XN], ax);
    qt_fused_split(f, W[W_GU], 2, GU_WIDTHS(c), (float *const[]){ A[A_GATE], A[A_UP] });
    be->ops->swiglu(be, W[W_H], A[A_GATE], A[A_UP], N * c->n_ff);
    qt_linear_forward(f, il, 1, (const int[]){ L_DOWN }, (float *const[]){ out }, W[W_H], ax);
    be->ops->axpy(be, N * C, 1.0f, A[A_XMID], out);
}

static void layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                           float *const *ax, const float *x, const float *dout, float *dx) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd, F = c->n_ff;
    const size_t nC = sizeof(float) * (size_t)(N * C), nF = sizeof(float) * (size_t)(N * F);

    // MLP: recompute xn = rmsnorm(xmid) and h = silu(gate) * up
    be->ops->rmsnorm(be, W[W_XN], NULL, A[A_XMID], TENSOR(T_FFN_NORM), N, C, c->rms_eps);
    be->ops->swiglu(be, W[W_H], A[A_GATE], A[A_UP], N * F);
    be->ops->zero(be, G[G_DH], nF);
    qt_linear_backward(f, il, L_DOWN, G[G_DH], dout, W[W_H], ax ? ax[L_DOWN] : NULL);
    be->ops->zero(be, G[G_DGATE], nF);
    be->ops->zero(be, G[G_DUP], nF);
    be->ops->swiglu_backward(be, G[G_DGATE], G[G_DUP], G[G_DH], A[A_GATE], A[A_UP], N * F);
    qt_fused_join(f, G[G_DGU], 2, GU_WIDTHS(c), (const float *const[]){ G[G_DGATE], G[G_DUP] });
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, L_GATE_UP, G[G_DXN], G[G_DGU], W[W_XN], ax ? ax[L_GATE_UP] : NULL);
    be->ops->copy(be, G[G_DXMID], dout, nC);
    be->ops->rmsnorm_backward(be, G[G_DXMID], G[G_DXN], A[A_XMID], TENSOR(T_FFN_NORM), A[A_RSTD2], N, C);

    // attention
    qt_attention_block_backward(f, il, L_O, G[G_DAO], G[G_DQ], G[G_DK], G[G_DV], G[G_DXMID], A[A_AO], A[A_LSE],
                                A[A_Q], A[A_K], A[A_V], ax);
    be->ops->rope(be, G[G_DQ], f->cs, N, c->n_head, c->head_dim, c->rope_type, true);
    be->ops->rope(be, G[G_DK], f->cs, N, c->n_head_kv, c->head_dim, c->rope_type, true);
    qt_fused_join(f, G[G_DQKV], 3, QKV_WIDTHS(c), (const float *const[]){ G[G_DQ], G[G_DK], G[G_DV] });
    be->ops->rmsnorm(be, W[W_XN], NULL, x, TENSOR(T_ATTN_NORM), N, C, c->rms_eps);
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, L_QKV, G[G_DXN], G[G_DQKV], W[W_XN], ax ? ax[L_QKV] : NULL);
    be->ops->copy(be, dx, G[G_DXMID], nC);
    be->ops->rmsnorm_backward(be, dx, G[G_DXN], x, TENSOR(T_ATTN_NORM), A[A_RSTD1], N, C);
}

static const char *missing_op(const qt_backend *be) { return !be->ops->copy_2d ? "copy_2d" : NULL; }

static const char *const gguf_names[] = { "phi3", NULL };
static const char *const hf_names[] = { "phi3", NULL };

const qt_arch_desc qt_arch_phi3 = {
    .name = "phi3",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = qt_llama_hf_acts,
    .gguf_rope = QT_ROPE_NEOX,
    .globals = qt_llama_globals,
    .n_globals = QT_G_FIRST_ARCH,
    .layer = tensors,
    .n_layer_tensors = N_TENSORS,
    .linears = linears,
    .n_linears = N_LINEARS,
    .default_targets = 1u << L_QKV,   // PEFT's default for phi3: qkv_proj
    .acts = qt_llama_acts,
    .n_acts = QT_LLAMA_N_ACTS,
    .work = work,
    .n_work = N_WORK,
    .grads = grads,
    .n_grads = N_GRADS,
    .flags = QT_ARCH_SWA,
    .missing_op = missing_op,
    .layer_forward = layer_forward,
    .layer_backward = layer_backward,
};
