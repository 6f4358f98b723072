// arch-gpt2.c: GPT-2 (GPT2LMHeadModel: gpt2, DialoGPT): learned position
// embeddings, pre-norm layers of LayerNorm with bias, multi-head attention
// from one fused projection (c_attn), a GELU (tanh approximation, gelu_new)
// MLP, biases on every projection, the head tied to the token embedding:
//   x   = wte[tok] + wpe[pos]
//   xn  = ln_1(x)                 q|k|v = c_attn(xn)      (no RoPE)
//   ao  = attn(q, k, v)           xmid  = x + attn.c_proj(ao)
//   xn  = ln_2(xmid)              out   = xmid + mlp.c_proj(gelu(c_fc(xn)))
//   logits = ln_f(x_L) wte^T
// transformers stores the four projections as Conv1D weights [in, out]; the
// loader transposes them (QT_TF_HF_T) so both forms hold llama.cpp's
// (out rows of in). LoRA targets the fused c_attn as one Linear of width
// 3 n_embd, as PEFT does (fan_in_fan_out: its lora_A (r, in) and lora_B
// (out, r) are stored the usual way).
// References: transformers GPT2LMHeadModel (modeling_gpt2.py), llama.cpp's
// LLM_ARCH_GPT2 (llm_build_gpt2) and convert_hf_to_gguf.py GPT2Model;
// tests/ref/make_ref_dense.py for the PyTorch reference.
#include <stdlib.h>

#include "base/base.h"
#include "model/engine.h"
#include "model/model.h"

enum { G_POS = QT_G_FIRST_ARCH, G_OUT_NORM_B, N_GLOBALS };

static const qt_tensor_desc globals[N_GLOBALS] = {
    [QT_G_TOK_EMBD] = { "token_embd.weight", "transformer.wte.weight", QT_D_C, QT_D_V, 0 },
    [QT_G_OUT_NORM] = { "output_norm.weight", "transformer.ln_f.weight", QT_D_C, QT_D_1, QT_TF_VEC },
    [QT_G_OUTPUT] = { "output.weight", "lm_head.weight", QT_D_C, QT_D_V, QT_TF_OPTIONAL },
    [G_POS] = { "position_embd.weight", "transformer.wpe.weight", QT_D_C, QT_D_NPOS, 0 },
    [G_OUT_NORM_B] = { "output_norm.bias", "transformer.ln_f.bias", QT_D_C, QT_D_1, QT_TF_VEC },
};

enum {
    T_LN1_W, T_LN1_B, T_QKV, T_QKV_B, T_O, T_O_B, T_LN2_W, T_LN2_B, T_UP, T_UP_B, T_DOWN, T_DOWN_B, N_TENSORS
};

#define LAYER_T(gguf, hf) "blk.%d." gguf, "transformer.h.%d." hf
#define VEC QT_TF_VEC
#define CONV QT_TF_HF_T
static const qt_tensor_desc tensors[N_TENSORS] = {
    [T_LN1_W] = { LAYER_T("attn_norm.weight", "ln_1.weight"), QT_D_C, QT_D_1, VEC },
    [T_LN1_B] = { LAYER_T("attn_norm.bias", "ln_1.bias"), QT_D_C, QT_D_1, VEC },
    [T_QKV] = { LAYER_T("attn_qkv.weight", "attn.c_attn.weight"), QT_D_C, QT_D_QKV, CONV },
    [T_QKV_B] = { LAYER_T("attn_qkv.bias", "attn.c_attn.bias"), QT_D_QKV, QT_D_1, VEC },
    [T_O] = { LAYER_T("attn_output.weight", "attn.c_proj.weight"), QT_D_C, QT_D_C, CONV },
    [T_O_B] = { LAYER_T("attn_output.bias", "attn.c_proj.bias"), QT_D_C, QT_D_1, VEC },
    [T_LN2_W] = { LAYER_T("ffn_norm.weight", "ln_2.weight"), QT_D_C, QT_D_1, VEC },
    [T_LN2_B] = { LAYER_T("ffn_norm.bias", "ln_2.bias"), QT_D_C, QT_D_1, VEC },
    [T_UP] = { LAYER_T("ffn_up.weight", "mlp.c_fc.weight"), QT_D_C, QT_D_F, CONV },
    [T_UP_B] = { LAYER_T("ffn_up.bias", "mlp.c_fc.bias"), QT_D_F, QT_D_1, VEC },
    [T_DOWN] = { LAYER_T("ffn_down.weight", "mlp.c_proj.weight"), QT_D_F, QT_D_C, CONV },
    [T_DOWN_B] = { LAYER_T("ffn_down.bias", "mlp.c_proj.bias"), QT_D_C, QT_D_1, VEC },
};
#undef LAYER_T
#undef VEC
#undef CONV

// Linears (LoRA targets). "c_proj" names both projections, as in PEFT.
enum { L_QKV, L_O, L_UP, L_DOWN, N_LINEARS };
static const qt_linear_desc linears[N_LINEARS] = {
    [L_QKV] = { "qkv", "transformer.h.%d.attn.c_attn", "attn_qkv", T_QKV, T_QKV_B, QT_LIN_PLAIN },
    [L_O] = { "o", "transformer.h.%d.attn.c_proj", "attn_output", T_O, T_O_B, QT_LIN_PLAIN },
    [L_UP] = { "up", "transformer.h.%d.mlp.c_fc", "ffn_up", T_UP, T_UP_B, QT_LIN_PLAIN },
    [L_DOWN] = { "down", "transformer.h.%d.mlp.c_proj", "ffn_down", T_DOWN, T_DOWN_B, QT_LIN_PLAIN },
};

// Activations kept per layer for the backward (per token).
enum { A_RSTD1, A_Q, A_K, A_V, A_AO, A_LSE, A_XMID, A_RSTD2, A_FC, N_ACTS };
static const qt_dim acts[N_ACTS] = {
    [A_RSTD1] = QT_D_1, [A_Q] = QT_D_QD, [A_K] = QT_D_KVD, [A_V] = QT_D_KVD, [A_AO] = QT_D_QD, [A_LSE] = QT_D_NH,
    [A_XMID] = QT_D_C, [A_RSTD2] = QT_D_1, [A_FC] = QT_D_F,
};
// Forward temporaries: normed input of a sub-layer, c_attn's fused output, gelu(fc).
enum { W_XN, W_QKV, W_H, N_WORK };
static const qt_dim work[N_WORK] = { [W_XN] = QT_D_C, [W_QKV] = QT_D_QKV, [W_H] = QT_D_F };
// Backward gradients.
enum { G_DXN, G_DQKV, G_DQ, G_DK, G_DV, G_DAO, G_DXMID, G_DFC, G_DH, N_GRADS };
static const qt_dim grads[N_GRADS] = {
    [G_DXN] = QT_D_C, [G_DQKV] = QT_D_QKV, [G_DQ] = QT_D_QD, [G_DK] = QT_D_KVD, [G_DV] = QT_D_KVD,
    [G_DAO] = QT_D_QD, [G_DXMID] = QT_D_C, [G_DFC] = QT_D_F, [G_DH] = QT_D_F,
};

#define TENSOR(slot) qt_model_tensor(f->m, il, (slot))

static void layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax, const float *x,
                          float *out) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;

    be->ops->layernorm(be, W[W_XN], A[A_RSTD1], x, TENSOR(T_LN1_W), TENSOR(T_LN1_B), N, C, c->rms_eps);
    qt_linear_forward(f, il, 1, (const int[]){ L_QKV }, (float *const[]){ W[W_QKV] }, W[W_XN], ax);
    qt_fused_split(f, W[W_QKV], 3, (const int64_t[]){ C, C, C }, (float *const[]){ A[A_Q], A[A_K], A[A_V] });
    qt_attention_block_forward(f, il, L_O, A[A_AO], A[A_LSE], A[A_Q], A[A_K], A[A_V], x, A[A_XMID], ax);

    be->ops->layernorm(be, W[W_XN], A[A_RSTD2], A[A_XMID], TENSOR(T_LN2_W), TENSOR(T_LN2_B), N, C, c->rms_eps);
    qt_linear_forward(f, il, 1, (const int[]){ L_UP }, (float *const[]){ A[A_FC] }, W[W_XN], ax);
    be->ops->gelu(be, W[W_H], A[A_FC], N * c->n_ff);
    qt_linear_forward(f, il, 1, (const int[]){ L_DOWN }, (float *const[]){ out }, W[W_H], ax);
    be->ops->axpy(be, N * C, 1.0f, A[A_XMID], out);
}

static void layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                           float *const *ax, const float *x, const float *dout, float *dx) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd, F = c->n_ff;
    const size_t nC = sizeof(float) * (size_t)(N * C), nF = sizeof(float) * (size_t)(N * F);

    // MLP: recompute xn = ln_2(xmid) and h = gelu(fc)
    be->ops->layernorm(be, W[W_XN], NULL, A[A_XMID], TENSOR(T_LN2_W), TENSOR(T_LN2_B), N, C, c->rms_eps);
    be->ops->gelu(be, W[W_H], A[A_FC], N * F);
    be->ops->zero(be, G[G_DH], nF);
    qt_linear_backward(f, il, L_DOWN, G[G_DH], dout, W[W_H], ax ? ax[L_DOWN] : NULL);
    be->ops->zero(be, G[G_DFC], nF);
    be->ops->gelu_backward(be, G[G_DFC], G[G_DH], A[A_FC], N * F);
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, L_UP, G[G_DXN], G[G_DFC], W[W_XN], ax ? ax[L_UP] : NULL);
    be->ops->copy(be, G[G_DXMID], dout, nC);
    be->ops->layernorm_backward(be, G[G_DXMID], G[G_DXN], A[A_XMID], TENSOR(T_LN2_W), A[A_RSTD2], N, C);

    // attention
    qt_attention_block_backward(f, il, L_O, G[G_DAO], G[G_DQ], G[G_DK], G[G_DV], G[G_DXMID], A[A_AO], A[A_LSE],
                                A[A_Q], A[A_K], A[A_V], ax);
    qt_fused_join(f, G[G_DQKV], 3, (const int64_t[]){ C, C, C }, (const float *const[]){ G[G_DQ], G[G_DK], G[G_DV] });
    be->ops->layernorm(be, W[W_XN], NULL, x, TENSOR(T_LN1_W), TENSOR(T_LN1_B), N, C, c->rms_eps);
    be->ops->zero(be, G[G_DXN], nC);
    qt_linear_backward(f, il, L_QKV, G[G_DXN], G[G_DQKV], W[W_XN], ax ? ax[L_QKV] : NULL);
    be->ops->copy(be, dx, G[G_DXMID], nC);
    be->ops->layernorm_backward(be, dx, G[G_DXN], x, TENSOR(T_LN1_W), A[A_RSTD1], N, C);
}

// x (N, C) = wte[tokens] + wpe[positions]; the position rows go through f->tmp.
static void embed(const qt_fwd *f, float *x, const int32_t *tokens) {
    qt_backend *be = f->be;
    const int64_t N = f->N, C = f->m->cfg.n_embd;
    int32_t *pos = qt_malloc(sizeof(int32_t) * (size_t)QT_MAX(N, 1));
    for (int s = 0; s < f->seqs->n_seq; s++)
        for (int t = f->seqs->start[s]; t < f->seqs->start[s + 1]; t++)
            pos[t] = (f->seqs->pos0 ? f->seqs->pos0[s] : 0) + t - f->seqs->start[s];
    be->ops->embed(be, x, tokens, N, qt_model_global(f->m, QT_G_TOK_EMBD));
    be->ops->embed(be, f->tmp, pos, N, qt_model_global(f->m, G_POS));
    be->ops->axpy(be, N * C, 1.0f, f->tmp, x);
    qt_free(pos);
}

static void final_norm(const qt_fwd *f, float *out, float *rstd, const float *x, int64_t n) {
    f->be->ops->layernorm(f->be, out, rstd, x, qt_model_global(f->m, QT_G_OUT_NORM),
                          qt_model_global(f->m, G_OUT_NORM_B), n, f->m->cfg.n_embd, f->m->cfg.rms_eps);
}

static void final_norm_backward(const qt_fwd *f, float *dx, const float *dout, const float *x, const float *rstd,
                                int64_t n) {
    f->be->ops->layernorm_backward(f->be, dx, dout, x, qt_model_global(f->m, QT_G_OUT_NORM), rstd, n,
                                   f->m->cfg.n_embd);
}

// Positions beyond n_positions have no embedding.
static int check(qt_model *m) {
    m->cfg.n_pos_max = m->cfg.n_ctx_train;
    return QT_OK;
}

static const char *missing_op(const qt_backend *be) {
    const qt_backend_ops *o = be->ops;
    return !o->layernorm ? "layernorm" : !o->layernorm_backward ? "layernorm_backward" : !o->gelu ? "gelu"
         : !o->gelu_backward ? "gelu_backward" : !o->copy_2d ? "copy_2d" : NULL;
}

static const char *const gguf_names[] = { "gpt2", NULL };
static const char *const hf_names[] = { "gpt2", NULL };
static const char *const hf_acts[] = { "gelu_new", "gelu_pytorch_tanh", NULL };
static const char *const act_keys[] = { "activation_function", NULL };
static const qt_hf_keys hf_keys = {
    .n_embd = "n_embd", .n_ff = "n_inner", .n_layer = "n_layer", .n_head = "n_head", .n_ctx = "n_positions",
    .eps = "layer_norm_epsilon", .act = act_keys, .ff_mult = 4, .tied_default = true,
};

const qt_arch_desc qt_arch_gpt2 = {
    .name = "gpt2",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = hf_acts,
    .gguf_rope = QT_ROPE_NEOX,   // unused: no RoPE
    .globals = globals,
    .n_globals = N_GLOBALS,
    .layer = tensors,
    .n_layer_tensors = N_TENSORS,
    .linears = linears,
    .n_linears = N_LINEARS,
    .default_targets = 1u << L_QKV,   // PEFT's default for gpt2: c_attn
    .acts = acts,
    .n_acts = N_ACTS,
    .work = work,
    .n_work = N_WORK,
    .grads = grads,
    .n_grads = N_GRADS,
    .check = check,
    .flags = QT_ARCH_LAYERNORM | QT_ARCH_NO_ROPE,
    .hf_keys = &hf_keys,
    .hf_alt_prefix = "transformer.",
    .missing_op = missing_op,
    .layer_forward = layer_forward,
    .layer_backward = layer_backward,
    .embed = embed,
    .final_norm = final_norm,
    .final_norm_backward = final_norm_backward,
};
