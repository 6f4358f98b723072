// context.h: an inference context (llama2.c's RunState): the KV cache of
// n_slots independent sequences and the activation buffers of one forward,
// in backend memory allocated up front. A forward runs a batch of several
// sequences at once, each at its own slot's next positions (the server's
// continuous batching), through the architecture's layer code (arch.h) on
// the backend.
#ifndef QT_CONTEXT_H
#define QT_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/arch.h"
#include "model/engine.h"
#include "model/lora.h"
#include "model/model.h"

typedef struct {
    const qt_model *m;   // borrowed; must outlive the context
    qt_backend *be;      // borrowed (or own_be); the model's tensors must be bound to it (qt_model_bind)
    qt_backend *own_be;  // a CPU backend on the caller's thread when none was given
    int n_ctx;           // KV cache positions per slot
    int n_batch;         // max tokens per forward
    int n_slots;         // independent sequences
    bool logits_all;     // qt_ctx_eval keeps logits of every token of a chunk, not just the last
    int *n_past;         // (n_slots) positions filled in each slot's cache
    qt_kv *kv;
    float *hidden_out;   // NULL, or (n, n_embd) caller-owned host memory: qt_ctx_eval of n tokens writes each
                         // token's final-norm hidden state here (embeddings; set it just for that call)

    // backend memory, one arena
    float *x, *x2;                   // (B, C) residual stream: layer input and output
    float *x_final;                  // x or x2: the last forward's final residual rows
    float *acts[QT_MAX_ACTS];        // (B, arch->acts[i]) the layer's activations
    float *work[QT_MAX_ACTS];        // (B, arch->work[i])
    float *cs;                       // (B, HS) RoPE cos/sin
    float *xn;                       // (B, C) final-normed rows for the head
    float *logits_dev;               // (B or n_slots, n_vocab)
    float *tmp, *sax;                // LoRA scratch: (B, widest output), (B, max rank)
    void *arena;
    size_t arena_size;
    float *logits;                   // host copy of logits_dev (the same memory on the CPU)
    int32_t *tok;                    // host (B)
    int *pos, *rows;                 // host (B)

    qt_adapter ad[QT_MAX_ADAPTERS];  // adapters applied unmerged
    int n_ad;
    int lora_max_rank;
} qt_ctx;

// One sequence (n_slots = 1), or several: NULL on allocation failure
// (logged with the size asked for). be NULL: a CPU backend on the calling
// thread, owned by the context (tests, tools that need no threads).
qt_ctx *qt_ctx_init(const qt_model *m, qt_backend *be, int n_ctx, int n_batch, bool logits_all);
qt_ctx *qt_ctx_init_slots(const qt_model *m, qt_backend *be, int n_ctx, int n_batch, int n_slots, bool logits_all);
void qt_ctx_free(qt_ctx *c);   // NULL is a no-op
// Bytes the context would allocate on the CPU backend (for `qtune info` and
// memory estimates).
size_t qt_ctx_bytes(const qt_model *m, int n_threads, int n_ctx, int n_batch, bool logits_all);
// Of that, the KV cache's (one sequence of n_ctx, on the CPU at inference
// precision); *type (unless NULL): its elements' type, F16 or F32.
size_t qt_ctx_kv_bytes(const qt_model *m, int n_ctx, qt_type *type);

// Run tokens at positions n_past .. n_past+n-1 of slot 0 through the model
// (in chunks of n_batch) and append them to its KV cache. Returns the
// logits: (n_vocab) of the last token, or (n, n_vocab) when logits_all (then
// n <= n_batch). NULL (logged) when the tokens do not fit in the context or
// an id is out of range. Valid until the next eval.
const float *qt_ctx_eval(qt_ctx *c, const int32_t *tokens, int n);
// The same for any slot (the server's embeddings run in a free slot).
const float *qt_ctx_eval_slot(qt_ctx *c, int slot, const int32_t *tokens, int n);

// Several sequences in one forward: sequence i's n tokens go to slot `slot`
// at its next positions (every slot at most once; sum of n <= n_batch).
// Returns (n_seq, n_vocab): row i = the logits of sequence i's last token.
// NULL (logged) on the same errors as qt_ctx_eval.
typedef struct {
    const int32_t *tokens;
    int n;
    int slot;
} qt_ctx_seq;
const float *qt_ctx_eval_batch(qt_ctx *c, const qt_ctx_seq *seqs, int n_seq);

int qt_ctx_n_past(const qt_ctx *c, int slot);
// Forget positions >= n of slot 0 / of a slot (chat: drop a turn; reset: n = 0).
void qt_ctx_truncate(qt_ctx *c, int n);
void qt_ctx_truncate_slot(qt_ctx *c, int slot, int n);

// Add adapter l (borrowed; must outlive the context) with an extra scale to
// every forward from now on: y = W x + sum over adapters of scale * s * B A x.
// QT_ERR (logged) beyond QT_MAX_ADAPTERS or when it does not fit the backend.
int qt_ctx_add_adapter(qt_ctx *c, const qt_lora *l, float scale);
// Remove all adapters, then add l unless it is NULL.
void qt_ctx_set_adapter(qt_ctx *c, const qt_lora *l, float scale);

#endif
