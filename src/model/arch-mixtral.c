// arch-mixtral.c: Mixtral (sparse mixture of experts): Llama's attention
// half (arch-llama.h) and, in place of its MLP, a router choosing
// num_experts_per_tok of num_local_experts SwiGLU experts per token (moe.c):
//   xmid = x + attn(rmsnorm(x))              (Llama's)
//   out  = xmid + moe(rmsnorm(xmid))          (router top-k, renormalised weights)
// LoRA targets: q, k, v, o, the experts' w1, w2, w3 (PEFT's
// block_sparse_moe.experts.N.w1: an adapter per expert) and the router
// ("router", PEFT's "gate"), which stays frozen unless named (--targets all
// leaves it out too).
// GGUF: llama.cpp writes Mixtral as general.architecture "llama" with
// llama.expert_count / expert_used_count, the router as blk.N.ffn_gate_inp
// (kept F32 by llama-quantize) and the experts merged into 3-D
// blk.N.ffn_{gate,up,down}_exps (older files: blk.N.ffn_gate.E.weight).
// References: transformers modeling_mixtral.py (MixtralForCausalLM, HF names),
// llama.cpp's LLM_ARCH_LLAMA with n_expert (GGUF names), convert_hf_to_gguf.py
// (expert merging); PyTorch autograd (tests/ref/make_ref_mixtral.py).
#include "base/base.h"
#include "model/arch-llama.h"
#include "model/model.h"
#include "model/moe.h"

// Per-layer tensor slots after the attention half's.
enum { MX_ROUTER = QT_LLAMA_FFN_NORM + 1, MX_W1, MX_W2, MX_W3, MX_N_TENSORS };

static const qt_tensor_desc tensors[MX_N_TENSORS] = {
    QT_LLAMA_ATTN_TENSORS,
    [MX_ROUTER] = { QT_LLAMA_LAYER_T("ffn_gate_inp.weight", "block_sparse_moe.gate.weight"), QT_D_C, QT_D_E,
                    QT_TF_KEEP },
    [MX_W1] = { QT_LLAMA_LAYER_T("ffn_gate_exps.weight", "block_sparse_moe.experts.%d.w1.weight"), QT_D_C, QT_D_F,
                QT_TF_EXPERT },
    [MX_W2] = { QT_LLAMA_LAYER_T("ffn_down_exps.weight", "block_sparse_moe.experts.%d.w2.weight"), QT_D_F, QT_D_C,
                QT_TF_EXPERT },
    [MX_W3] = { QT_LLAMA_LAYER_T("ffn_up_exps.weight", "block_sparse_moe.experts.%d.w3.weight"), QT_D_C, QT_D_F,
                QT_TF_EXPERT },
};

// Linears: the attention half's q, k, v, o first.
enum { L_W1 = QT_LLAMA_O + 1, L_W2, L_W3, L_ROUTER, N_LINEARS };

#define EXPERT(w) "model.layers.%d.block_sparse_moe.experts.%d." w
static const qt_linear_desc linears[N_LINEARS] = {
    QT_LLAMA_ATTN_LINEARS,
    [L_W1] = { "w1", EXPERT("w1"), "ffn_gate_exps", MX_W1, -1, QT_LIN_PLAIN },
    [L_W2] = { "w2", EXPERT("w2"), "ffn_down_exps", MX_W2, -1, QT_LIN_PLAIN },
    [L_W3] = { "w3", EXPERT("w3"), "ffn_up_exps", MX_W3, -1, QT_LIN_PLAIN },
    [L_ROUTER] = { "router", "model.layers.%d.block_sparse_moe.gate", "ffn_gate_inp", MX_ROUTER, -1, QT_LIN_PLAIN },
};
#undef EXPERT

// Activations kept per layer: the attention half's, then the MoE block's (moe.h).
enum { A_RSTD2 = QT_LLAMA_ATTN_N_ACTS, A_LOGITS, A_RW, A_IDS, A_GATE, A_UP, A_Y, N_ACTS };
static const qt_dim acts[N_ACTS] = {
    QT_LLAMA_ATTN_ACT_DIMS, [A_RSTD2] = QT_D_1, [A_LOGITS] = QT_D_E, [A_RW] = QT_D_K,
    [A_IDS] = QT_D_K,   // int32 ids in a float-wide buffer
    [A_GATE] = QT_D_KF, [A_UP] = QT_D_KF, [A_Y] = QT_D_KC,
};
enum { W_XG = QT_LLAMA_ATTN_N_WORK, W_H, W_POS, N_WORK };
static const qt_dim work[N_WORK] = { [QT_LLAMA_W_XN] = QT_D_C, [W_XG] = QT_D_KC, [W_H] = QT_D_KF, [W_POS] = QT_D_K };
enum { G_DY = QT_LLAMA_ATTN_N_GRADS, G_DXG, G_DH, G_DGATE, G_DUP, G_DRW, G_DLOGITS, N_GRADS };
static const qt_dim grads[N_GRADS] = {
    QT_LLAMA_ATTN_GRAD_DIMS, [G_DY] = QT_D_KC, [G_DXG] = QT_D_KC, [G_DH] = QT_D_KF, [G_DGATE] = QT_D_KF,
    [G_DUP] = QT_D_KF, [G_DRW] = QT_D_K, [G_DLOGITS] = QT_D_E,
};
_Static_assert(N_ACTS <= QT_MAX_ACTS && N_WORK <= QT_MAX_ACTS && N_GRADS <= QT_MAX_ACTS, "arch.h's buffer limit");
_Static_assert(sizeof(int32_t) == sizeof(float), "ids and positions live in float-wide buffers");

static const qt_moe_desc moe = { .router = L_ROUTER, .gate = L_W1, .up = L_W3, .down = L_W2, .norm = true };

static qt_moe_bufs bufs(float *const *A, float *const *W) {
    return (qt_moe_bufs){ .logits = A[A_LOGITS], .w = A[A_RW], .ids = (int32_t *)A[A_IDS], .gate = A[A_GATE],
                          .up = A[A_UP], .y = A[A_Y], .xg = W[W_XG], .h = W[W_H], .pos = (int32_t *)W[W_POS] };
}

static void layer_forward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax, const float *x,
                          float *out) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;
    qt_llama_attn_forward(f, il, A, W, ax, x);
    float *xmid = A[QT_LLAMA_A_XMID], *xn = W[QT_LLAMA_W_XN];
    be->ops->rmsnorm(be, xn, A[A_RSTD2], xmid, qt_model_tensor(f->m, il, QT_LLAMA_FFN_NORM), N, C, c->rms_eps);
    be->ops->copy(be, out, xmid, sizeof(float) * (size_t)(N * C));
    const qt_moe_bufs b = bufs(A, W);
    qt_moe_forward(f, il, &moe, &b, ax, xn, out);
}

static void layer_backward(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                           float *const *ax, const float *x, const float *dout, float *dx) {
    qt_backend *be = f->be;
    const qt_config *c = &f->m->cfg;
    const int64_t N = f->N, C = c->n_embd;
    const size_t nC = sizeof(float) * (size_t)(N * C);
    const qt_tensor *norm = qt_model_tensor(f->m, il, QT_LLAMA_FFN_NORM);
    float *xmid = A[QT_LLAMA_A_XMID], *xn = W[QT_LLAMA_W_XN], *dxn = G[QT_LLAMA_G_DXN], *dxmid = G[QT_LLAMA_G_DXMID];
    be->ops->rmsnorm(be, xn, NULL, xmid, norm, N, C, c->rms_eps);   // recomputed
    be->ops->zero(be, dxn, nC);
    const qt_moe_bufs b = bufs(A, W);
    const qt_moe_grads g = { .dy = G[G_DY], .dxg = G[G_DXG], .dh = G[G_DH], .dgate = G[G_DGATE], .dup = G[G_DUP],
                             .dw = G[G_DRW], .dlogits = G[G_DLOGITS] };
    qt_moe_backward(f, il, &moe, &b, &g, ax, xn, dout, dxn);
    be->ops->copy(be, dxmid, dout, nC);
    be->ops->rmsnorm_backward(be, dxmid, dxn, xmid, norm, A[A_RSTD2], N, C);
    qt_llama_attn_backward(f, il, A, W, G, ax, x, dx);
}

static const char *const gguf_names[] = { "llama", NULL };
static const char *const hf_names[] = { "mixtral", NULL };

const qt_arch_desc qt_arch_mixtral = {
    .name = "mixtral",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = qt_llama_hf_acts,
    .moe = true,
    .gguf_rope = QT_ROPE_NORM,
    .globals = qt_llama_globals,
    .n_globals = QT_G_FIRST_ARCH,
    .layer = tensors,
    .n_layer_tensors = MX_N_TENSORS,
    .linears = linears,
    .n_linears = N_LINEARS,
    .default_targets = (1u << QT_LLAMA_Q) | (1u << QT_LLAMA_V),   // PEFT's for mixtral
    .acts = acts,
    .n_acts = N_ACTS,
    .work = work,
    .n_work = N_WORK,
    .grads = grads,
    .n_grads = N_GRADS,
    .act_recompute = QT_LLAMA_ATTN_ACT_RECOMPUTE,   // q, k, v (the experts' gate/up are kept)
    .missing_op = qt_moe_missing_op,
    .layer_forward = layer_forward,
    .layer_backward = layer_backward,
};
