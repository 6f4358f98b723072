// lora.h: LoRA adapters (Hu et al. 2021, as Hugging Face PEFT implements them)
// on the projections of a frozen base model.
//
// Targets are the linear projections an architecture lists (arch.h): any of
// them, fused ones (GPT-2's c_attn, Phi-3's qkv_proj) included, which PEFT
// adapts as one Linear of the fused width. An expert linear (QT_LF_EXPERT,
// Mixtral's w1/w2/w3) is one target with an adapter per expert, as PEFT
// wraps each block_sparse_moe.experts.N.w1 on its own.
//
//   y = W x + s * B (A drop(x)),  A (r, in), B (out, r), s = alpha / r
//   (rsLoRA: s = alpha / sqrt(r)). PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in))
//   (kaiming_uniform with a = sqrt(5)), B = 0, so training starts at the base.
//
// Parameters, gradients and the two AdamW moments live in four flat arenas of
// the same layout, so the optimizer is one loop and a checkpoint is a list of
// (name, offset, size) (llm.c's layout). The adapter lives in model/ because
// inference applies it too; grads, m and v are allocated only for training
// (qt_lora_enable_training).
#ifndef QT_LORA_H
#define QT_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    int rank;            // r (default 8)
    float alpha;         // default 16
    float dropout;       // on the adapter input, training only (default 0)
    bool rslora;         // s = alpha / sqrt(r)
    uint64_t targets;    // bit i = linear i of the architecture (arch.h); 0: its default (PEFT's)
    int n_layers;        // adapt the last n layers; <= 0: all
} qt_lora_config;

qt_lora_config qt_lora_defaults(void);
// "q,k,v,o,gate,up,down" (also PEFT's q_proj, ..., and "all") against the
// linears of architecture a -> bit mask; QT_ERR on an unknown name (logged
// with the names a has).
int qt_lora_parse_targets(const qt_arch_desc *a, const char *list, uint64_t *out);

typedef struct {
    float *a;    // (r, in) into params, NULL when this (layer, target) has no adapter
    float *b;    // (out, r)
    int n_in, n_out;
    size_t off;  // offset of a in the arenas (b follows at off + r*in)
} qt_lora_pair;

typedef struct {
    qt_lora_config cfg;      // cfg.targets resolved (never 0)
    float scale;             // s
    const qt_arch_desc *arch;
    int n_layer;             // of the model
    int n_linears;           // of its architecture
    int n_expert;            // of the model (0: dense)
    int first_layer;         // layers < first_layer have no adapters
    // Adapter slots of a layer: one per linear, n_expert per expert linear,
    // in linear order (so a dense model's slot k is its linear k).
    int n_slots;
    int slot0[QT_MAX_LINEARS];   // first slot of linear t (its expert 0)
    int *slot_lin, *slot_expert; // (n_slots) the linear and expert (0 for plain linears) of slot k
    qt_lora_pair *pairs;     // (n_layer, n_slots)
    size_t n_params;
    float *params;           // (n_params)
    float *grads;            // (n_params) NULL until qt_lora_enable_training
    float *m, *v;            // (n_params) AdamW moments, likewise
} qt_lora;

// Adapters for model m, initialised the PEFT way from seed. NULL on error.
qt_lora *qt_lora_init(const qt_model *m, const qt_lora_config *cfg, uint64_t seed);
void qt_lora_free(qt_lora *l);    // NULL is a no-op
// One adapter equal to the sum of n adapters, each times scales[i]: the
// ranks are stacked, A = [A_1; ...; A_n] and B = [c_1 B_1, ..., c_n B_n] with
// c_i = scales[i] * s_i, and the result's own scale is 1, so
// B A x = sum_i scales[i] * s_i * B_i A_i x exactly. NULL on error (logged).
qt_lora *qt_lora_stack(const qt_model *m, const qt_lora *const *ls, const float *scales, int n);

// Allocate (zeroed) gradients and optimizer moments. QT_ERR on failure (logged).
int qt_lora_enable_training(qt_lora *l);
// The pair of linear t in layer il (expert 0 of an expert linear), of its
// expert e, of slot k.
static inline const qt_lora_pair *qt_lora_get(const qt_lora *l, int il, int t) {
    return &l->pairs[(size_t)il * l->n_slots + l->slot0[t]];
}
static inline const qt_lora_pair *qt_lora_get_x(const qt_lora *l, int il, int t, int e) {
    return &l->pairs[(size_t)il * l->n_slots + l->slot0[t] + e];
}
static inline const qt_lora_pair *qt_lora_at(const qt_lora *l, int il, int k) {
    return &l->pairs[(size_t)il * l->n_slots + k];
}
// (in, out) dims of linear t of model m (its weight's shape).
void qt_lora_dims(const qt_model *m, int t, int *n_in, int *n_out);

#endif
