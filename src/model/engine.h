// engine.h: the state one forward (and backward) pass runs with, and the
// helpers every architecture's layer code uses: linear projections with
// their LoRA adapters (forward and backward), and the checks between
// operations. Inference (context.c) and training (src/train/model-train.c)
// fill a qt_fwd and call the same architecture functions (arch.h).
#ifndef QT_ENGINE_H
#define QT_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/lora.h"
#include "model/model.h"

// An adapter as the backend sees it: l's layout with its parameters (and,
// in training, gradients) in backend memory.
typedef struct {
    const qt_lora *l;      // borrowed: layout (pairs, offsets), rank, scale
    const float *params;   // backend copy of l->params (l->params itself on host-memory backends)
    float *grads;          // backend gradients (training only), else NULL
    float scale;           // multiplies l->scale (--adapter PATH:SCALE)
} qt_adapter;

// Backend copies of l's parameters (and gradients when `grads`): on a
// host-memory backend these are l's own arrays. QT_ERR (logged) when they do
// not fit.
int qt_adapter_bind(qt_backend *be, qt_adapter *a, const qt_lora *l, float scale, bool grads);
void qt_adapter_release(qt_backend *be, qt_adapter *a);
// Copy l's (host) parameters to the backend copy again (after an optimizer step).
void qt_adapter_upload(qt_backend *be, qt_adapter *a);

#define QT_MAX_ADAPTERS 8

struct qt_fwd {
    const qt_model *m;
    qt_backend *be;
    int64_t N;                   // tokens of the batch
    const qt_seqs *seqs;         // how they form sequences (host)
    const float *cs;             // (N, HS) RoPE cos/sin of each token's position
    qt_kv *kv;                   // inference: the KV cache; training: NULL
    const qt_adapter *ad;        // adapters applied unmerged
    int n_ad;
    // training only
    bool train;                  // dropout on the adapters' inputs
    bool recompute;              // the acts in arch->act_recompute were not kept: layer_backward recomputes them
    uint64_t drop_seed;
    float *tmp;                  // (N, widest linear output) scratch (an expert sees at most N rows)
    float *xdrop;                // (N, widest linear input) dropped adapter input
    float *dax, *sax;            // (N, max rank)
    const atomic_int *stop;      // NULL, or a flag: the pass ends early once it is set
};

static inline bool qt_fwd_stopped(const qt_fwd *f) {
    return f->stop && atomic_load_explicit(f->stop, memory_order_relaxed);
}

// ys[i] (N, out_i) = x (N, in) W_i^T (+ b_i) + sum over adapters of
// scale * s * (drop(x) A^T) B^T, for the n linears lins[i] of layer il, which
// share their input x (one pass over x where the backend can). ax: where the
// trained adapter keeps drop(x) A^T (N, rank) per linear index (training),
// or NULL.
void qt_linear_forward(const qt_fwd *f, int il, int n, const int *lins, float *const *ys, const float *x,
                       float *const *ax);
// Backward of linear lin of layer il: dx (N, in) += dy W + adapter path;
// the trained adapter's gradients += (dB = s dy^T ax, dA = s (dy B)^T drop(x)).
// x and ax as the forward saw and left them.
void qt_linear_backward(const qt_fwd *f, int il, int lin, float *dx, const float *dy, const float *x,
                        const float *ax);

// Fused projections (GPT-2's c_attn, Phi-3's qkv_proj and gate_up_proj):
// parts[i] (N, widths[i]) = the i-th column block of fused (N, sum of
// widths), and back (fused written whole).
void qt_fused_split(const qt_fwd *f, const float *fused, int n, const int64_t *widths, float *const *parts);
void qt_fused_join(const qt_fwd *f, float *fused, int n, const int64_t *widths, const float *const *parts);

// The attention sub-layer after q, k, v (N, .) are ready (RoPE applied):
// ao (N, QD) = attn(q, k, v) (lse (N, NH) kept), xmid (N, C) = x + lin_o(ao).
void qt_attention_block_forward(const qt_fwd *f, int il, int lin_o, float *ao, float *lse, const float *q,
                                const float *k, const float *v, const float *x, float *xmid, float *const *ax);
// Its backward down to q, k, v: dao (N, QD) = d/d ao (through lin_o, whose
// adapter gradients += ), dq, dk, dv = d/d q, k, v (all written) given
// dxmid; ao, lse, q, k, v as the forward left them.
void qt_attention_block_backward(const qt_fwd *f, int il, int lin_o, float *dao, float *dq, float *dk, float *dv,
                                 const float *dxmid, const float *ao, const float *lse, const float *q,
                                 const float *k, const float *v, float *const *ax);

// The same for expert e of expert linears (arch.h) of layer il, on the
// n_rows (<= N) rows of x routed to it: ys[i] (n_rows, out_i); axs[i]: where
// the trained adapter keeps linear lins[i]'s drop(x) A^T (n_rows, rank) for
// this expert, or NULL. n_rows == 0 does nothing (decode reads only the
// experts its tokens chose).
void qt_expert_linear_forward(const qt_fwd *f, int il, int e, int64_t n_rows, int n, const int *lins,
                              float *const *ys, const float *x, float *const *axs);
void qt_expert_linear_backward(const qt_fwd *f, int il, int lin, int e, int64_t n_rows, float *dx, const float *dy,
                               const float *x, const float *ax);

// The architecture's embedding / final norm (arch.h), or the Llama way.
void qt_embed(const qt_fwd *f, float *x, const int32_t *tokens);
void qt_final_norm(const qt_fwd *f, float *out, float *rstd, const float *x, int64_t n);
void qt_final_norm_backward(const qt_fwd *f, float *dx, const float *dout, const float *x, const float *rstd,
                            int64_t n);

// Widest input and output of any linear of m (scratch sizes).
void qt_linear_widths(const qt_model *m, int64_t *max_in, int64_t *max_out);

#endif
