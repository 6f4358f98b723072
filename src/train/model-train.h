// model-train.h: forward and backward of a model with LoRA adapters over a
// batch of packed sequences (llm.c's gpt2_forward / gpt2_backward, for a
// frozen base), running the architecture's layer code (arch.h) on a backend. The base weights stay in their stored
// type (F32/F16/BF16/quantized: QLoRA); only the adapters get gradients.
//
// A batch is n_seq sequences of different lengths laid end to end (N tokens
// in all): matmuls run over all N tokens at once, attention stays inside each
// sequence, and no token is padding.
#ifndef QT_MODEL_TRAIN_H
#define QT_MODEL_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include <stdatomic.h>

#include "backend/backend.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/model.h"

typedef struct {
    const int32_t *tokens;    // (N) inputs
    const int32_t *targets;   // (N) next-token targets; -1 = not trained
    const int *seq_start;     // (n_seq + 1) offsets into tokens; seq_start[n_seq] = N
    int n_seq;
} qt_batch;

typedef struct qt_tmodel qt_tmodel;

// What the forward keeps for the backward:
//   KEEP:       every layer's activations (fastest, most memory);
//   CHECKPOINT: only each layer's input; the backward runs the layer's
//               forward again (activation memory of one layer instead of all);
//   RECOMPUTE:  every layer's activations except those the architecture can
//               cheaply recompute (arch.h act_recompute: Llama's q, k, v,
//               gate, up), which the backward computes again (about 1/5 of
//               KEEP's memory for ~8% more FLOPs per step).
typedef enum { QT_ACT_KEEP = 0, QT_ACT_CHECKPOINT = 1, QT_ACT_RECOMPUTE = 2 } qt_act_mode;
const char *qt_act_mode_name(qt_act_mode mode);

// Buffers for batches of up to max_tokens tokens with sequences of at most
// max_seq tokens, in backend be's memory (the model's tensors must be bound
// to it). NULL on allocation failure (logged).
qt_tmodel *qt_tmodel_init(const qt_model *m, qt_lora *lora, qt_backend *be, int max_tokens, int max_seq,
                          qt_act_mode mode);
void qt_tmodel_free(qt_tmodel *tm);
// Bytes qt_tmodel_init would allocate (activations and scratch).
size_t qt_tmodel_bytes(const qt_model *m, const qt_lora *lora, int max_tokens, int max_seq, qt_act_mode mode,
                       int n_threads);

// Forward (and backward when `backward`): returns the sum of the
// cross-entropy losses over the batch's targets in *loss_sum and their count
// in *n_targets. Backward accumulates (+=) d(sum_t dscale * loss_t)/d(adapter)
// into lora->grads (dscale = 1 / targets in the optimizer step, for a mean).
// train: dropout on (training); off for evaluation. drop_seed varies the
// dropout masks per step. QT_ERR (logged) if the batch does not fit;
// QT_STOPPED if the stop flag was set during the step (outputs and
// gradients are then incomplete: discard them).
int qt_tmodel_step(qt_tmodel *tm, const qt_batch *b, bool backward, bool train, float dscale, uint64_t drop_seed,
                   double *loss_sum, int64_t *n_targets);

// Called in backward right after layer il's adapter gradients are complete
// (layers run last to first): the trainer starts their all-reduce there so
// communication overlaps the remaining layers. NULL: no hook.
typedef void (*qt_tmodel_layer_fn)(void *ud, int il);
void qt_tmodel_set_layer_hook(qt_tmodel *tm, qt_tmodel_layer_fn fn, void *ud);

// A flag (set by a signal handler: Ctrl-C) polled between layers and inside
// the backend's long operations; NULL: none. A step that sees it set returns
// QT_STOPPED within one operation's time.
void qt_tmodel_set_stop(qt_tmodel *tm, const atomic_int *stop);

// Precision of the products (kernels.h qt_prec) on a CPU backend: QT_PREC_F32
// (the dequantized-weight math in fp32) or QT_PREC_BF16 (bf16 products with
// fp32 sums, PyTorch autocast; as F32 where the kernels have no bf16 gemm).
// The default is BF16 where the CPU has a bf16 gemm, else F32. Adapters, optimizer state and reductions stay fp32 either way.
void qt_tmodel_set_prec(qt_tmodel *tm, qt_prec prec);

#endif
