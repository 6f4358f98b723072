// context.h: an inference context (llama2.c's RunState): the KV cache and the
// activation buffers for one sequence, in one arena allocated up front.
#ifndef QT_CONTEXT_H
#define QT_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/pool.h"
#include "model/lora.h"
#include "model/model.h"

#define QT_MAX_ADAPTERS 8

typedef struct {
    const qt_model *m;   // borrowed; must outlive the context
    qt_pool *pool;       // borrowed; may be NULL (single-threaded)
    int n_ctx;           // KV cache positions
    int n_batch;         // max tokens per forward chunk
    bool logits_all;     // keep logits of every token of a chunk, not just the last
    int n_past;          // positions filled in the KV cache
    float *hidden_out;   // NULL, or (n, n_embd) caller-owned: qt_ctx_eval of n tokens writes each token's
                         // final-norm hidden state here (embeddings; set it just for that call)

    float *k_cache;      // (n_layer, NKV, n_ctx, HS)  head-major: one dense matrix per head
    float *v_cache;      // (n_layer, NKV, HS, n_ctx)  transposed: P @ V is a matmul
    float *x;            // (B, C) residual stream
    float *xn;           // (B, C) normed input of a sub-layer
    float *q;            // (B, NH*HS)
    float *k;            // (B, NKV*HS) new keys before they go into the cache
    float *v;            // (B, NKV*HS) new values
    float *att;          // (B, NH*HS) attention output before wo
    float *proj;         // (B, C) output of wo / w_down
    float *gate;         // (B, F)
    float *up;           // (B, F)
    float *logits;       // (B or 1, n_vocab)
    float *scores;       // attention scratch, qt_attention_scratch() floats
    float *rope_cs;      // (B, HS) cos/sin
    int *pos;            // (B)
    void *arena;
    size_t arena_size;

    const qt_lora *loras[QT_MAX_ADAPTERS];  // borrowed adapters applied unmerged
    float lora_scales[QT_MAX_ADAPTERS];     // multiply each adapter's own scale (--adapter PATH:SCALE)
    int n_loras;
    int lora_max_rank;
    float *lora_ax;      // (B, max rank)
    float *lora_tmp;     // (B, max(qd, F, C))
} qt_ctx;

// NULL on allocation failure (logged with the size asked for).
qt_ctx *qt_ctx_init(const qt_model *m, qt_pool *pool, int n_ctx, int n_batch, bool logits_all);
void qt_ctx_free(qt_ctx *c);   // NULL is a no-op
// Bytes the context would allocate (for `qtune info` and memory estimates).
size_t qt_ctx_bytes(const qt_model *m, int n_threads, int n_ctx, int n_batch, bool logits_all);

// Run tokens at positions n_past .. n_past+n-1 through the model and append
// them to the KV cache. Returns the logits: (n_vocab) of the last token, or
// (n, n_vocab) when logits_all (then n <= n_batch). NULL (logged) when the
// tokens do not fit in the context or an id is out of range.
const float *qt_ctx_eval(qt_ctx *c, const int32_t *tokens, int n);

// Add adapter l (borrowed; must outlive the context) with an extra scale to
// every forward from now on: y = W x + sum over adapters of scale * s * B A x.
// QT_ERR (logged) beyond QT_MAX_ADAPTERS.
int qt_ctx_add_adapter(qt_ctx *c, const qt_lora *l, float scale);
// Remove all adapters, then add l unless it is NULL.
void qt_ctx_set_adapter(qt_ctx *c, const qt_lora *l, float scale);

// Forget positions >= n (chat: drop a turn; reset: n = 0).
void qt_ctx_truncate(qt_ctx *c, int n);

#endif
