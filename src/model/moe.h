// moe.h: the sparse mixture-of-experts MLP (Mixtral's block_sparse_moe),
// forward and backward, for the MoE architectures' layer code (arch-mixtral.c;
// a Qwen-MoE file would reuse it with norm = false): a router linear, top-k
// routing (backend moe_route), the tokens grouped by expert so each expert's
// gate/up/down run as matmuls over its own tokens (qt_expert_linear_*, with
// their LoRA adapters), and the weighted scatter-add back (moe_combine).
// Only the experts some token chose are read: a decode step touches K of E.
#ifndef QT_MOE_H
#define QT_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/engine.h"

typedef struct {
    int router;            // linear: xn (N, C) -> router logits (N, E)
    int gate, up, down;    // expert linears: SwiGLU down(silu(gate(x)) * up(x)) (Mixtral's w1, w3, w2)
    bool norm;             // renormalise the top-k weights (Mixtral: true)
} qt_moe_desc;

// The block's buffers in backend memory; widths per token (K experts per
// token, E experts, F n_ff, C n_embd). Rows of the (N*K, .) buffers are in
// expert-grouped order (backend.h).
typedef struct {
    float *logits;      // (E) router logits                    kept for the backward
    float *w;           // (K) routing weights                  kept
    int32_t *ids;       // (K) chosen experts                   kept
    float *gate, *up;   // (K, F) grouped                       kept
    float *y;           // (K, C) grouped expert outputs        kept
    float *xg;          // (K, C) grouped inputs                recomputed
    float *h;           // (K, F) silu(gate) * up               recomputed
    int32_t *pos;       // (K) grouped row of (token, j)        recomputed
} qt_moe_bufs;

typedef struct {
    float *dy, *dxg;             // (K, C)
    float *dh, *dgate, *dup;     // (K, F)
    float *dw;                   // (K)
    float *dlogits;              // (E)
} qt_moe_grads;

// The first moe_* operation (backend.h) backend be lacks, or NULL.
const char *qt_moe_missing_op(const qt_backend *be);

// out (N, C) += moe(xn (N, C)) for layer il. ax: per linear, the trained
// adapter's saved drop(x) A^T: (N, r) for the router, (N*K, r) grouped for
// the expert linears; or NULL (inference).
void qt_moe_forward(const qt_fwd *f, int il, const qt_moe_desc *d, const qt_moe_bufs *b, float *const *ax,
                    const float *xn, float *out);
// dxn (N, C) += d loss / d xn given dout = d loss / d out; adapter
// gradients +=. b's kept buffers as the forward left them.
void qt_moe_backward(const qt_fwd *f, int il, const qt_moe_desc *d, const qt_moe_bufs *b, const qt_moe_grads *g,
                     float *const *ax, const float *xn, const float *dout, float *dxn);

#endif
