// arch.h: an architecture described in one place. Each arch-*.c file fills
// one qt_arch_desc: the names it is known by in GGUF files and in
// Hugging Face config.json, its tensors (llama.cpp and transformers names,
// shapes), its linear projections that LoRA can adapt (with PEFT's and
// llama.cpp's names), the per-token activations its layer keeps for the
// backward, and its layer's forward and backward written against the
// backend operations (backend.h) and the engine helpers (engine.h). One
// definition serves inference (generate, chat, serve, eval: the same code on
// one token with the KV cache) and training (activations kept for the
// backward), like llama.cpp's llm_build_* with llm.c's explicit backward.
//
// Adding an architecture = one arch-<name>.c, one line in arch.c's registry,
// its tests (docs/architecture.md has the steps).
#ifndef QT_ARCH_H
#define QT_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct qt_model qt_model;
typedef struct qt_fwd qt_fwd;
typedef struct qt_config qt_config;

// Symbolic sizes, resolved from a model's configuration (qt_dim_size).
typedef enum {
    QT_D_1 = 0,    // 1
    QT_D_C,        // n_embd
    QT_D_QD,       // n_head * head_dim (queries)
    QT_D_KVD,      // n_head_kv * head_dim (keys, values)
    QT_D_F,        // n_ff
    QT_D_V,        // n_vocab
    QT_D_NH,       // n_head (per-row attention statistics)
    QT_D_HALF_HS,  // head_dim / 2 (RoPE frequency factors)
    QT_D_QKV,      // n_head * head_dim + 2 * n_head_kv * head_dim (fused q, k, v)
    QT_D_2F,       // 2 * n_ff (fused gate, up)
    QT_D_NPOS,     // n_ctx_train (rows of a learned position embedding: GPT-2's n_positions)
    QT_D_E,        // n_expert (router logits)
    QT_D_K,        // n_expert_used (top-k routing weights, expert ids)
    QT_D_KC,       // n_expert_used * n_embd (a token's rows grouped by expert)
    QT_D_KF,       // n_expert_used * n_ff (their experts' hidden)
    QT_D_COUNT
} qt_dim;

// Tensor flags.
#define QT_TF_OPTIONAL 1u   // may be absent (then data == NULL)
#define QT_TF_VEC 2u        // a vector (ne1 = 1), converted to F32 at load
#define QT_TF_HF_T 4u       // transformers stores it transposed, [in, out] (GPT-2's Conv1D): transposed at load
// One per expert: n_expert (ne0, ne1) matrices. GGUF: merged 3-D `gguf`
// with ne [ne0, ne1, n_expert] (llama.cpp's "blk.%d.ffn_gate_exps.weight"),
// or in older files one 2-D tensor per expert, named with "_exps." replaced
// by ".%d." ("blk.%d.ffn_gate.%d.weight", llama.cpp's FFN_GATE_EXP); HF:
// `hf` with two %d (layer, expert). A linear whose weight is such a slot is
// an expert linear: one per expert, each adapted on its own (PEFT path with
// two %d; GGUF LoRA tensors 3-D over the experts).
#define QT_TF_EXPERT 8u
// Kept in its stored type by --quantize and written unquantized by export
// (a MoE router: its top-k is sensitive to rounding; llama-quantize keeps
// ffn_gate_inp in F32 too).
#define QT_TF_KEEP 16u

// Global tensor slots every architecture has at these indices; its own
// follow from QT_G_FIRST_ARCH.
enum { QT_G_TOK_EMBD = 0, QT_G_OUT_NORM = 1, QT_G_OUTPUT = 2, QT_G_FIRST_ARCH = 3 };

typedef struct {
    const char *gguf;   // llama.cpp's name ("blk.%d.attn_q.weight"; %d = layer)
    const char *hf;     // transformers' name ("model.layers.%d.self_attn.q_proj.weight")
    qt_dim ne0, ne1;    // row length (input), rows (output); a vector has ne1 = QT_D_1
    unsigned flags;     // QT_TF_*
} qt_tensor_desc;

// RoPE'd rows of a projection: GGUF files and HF checkpoints order the rows
// of q and k differently inside each head (model.h); adapters written for
// one must be permuted for the other.
typedef enum { QT_LIN_PLAIN = 0, QT_LIN_ROPE_Q = 1, QT_LIN_ROPE_K = 2 } qt_lin_rope;

// A linear projection y = x W^T (+ b) that LoRA can adapt.
typedef struct {
    const char *name;   // qtune's --targets name ("q")
    const char *hf;     // PEFT module path ("model.layers.%d.self_attn.q_proj"); its last part is the target name
    const char *gguf;   // llama.cpp's base name inside a layer ("attn_q")
    int weight;         // per-layer tensor slot of W
    int bias;           // per-layer tensor slot of b, or -1
    qt_lin_rope rope;
} qt_linear_desc;

// Architecture flags (qt_arch_desc.flags).
#define QT_ARCH_LAYERNORM 1u   // LayerNorm: its epsilon is GGUF <arch>.attention.layer_norm_epsilon
#define QT_ARCH_NO_ROPE 2u     // no rotary embedding (learned positions): no rope.* keys
#define QT_ARCH_SWA 4u         // config sliding_window / GGUF <arch>.attention.sliding_window is read; the
                               // context is capped to it (positions where the window would cut nothing)
#define QT_ARCH_HF_NORM_PLUS1 8u   // transformers stores each norm weight (a vector that is no linear's bias)
                                   // as w - 1 (Gemma's RMSNorm scales by 1 + w): 1 is added at load, as
                                   // llama.cpp's converter does, so both forms hold the scale itself

// The gated MLP's activation (layers that have one): silu (SwiGLU) or
// gelu with the tanh approximation (GeGLU, Gemma).
typedef enum { QT_FFN_SILU = 0, QT_FFN_GELU_TANH = 1 } qt_ffn_act;

// config.json names of the common hyper-parameters where an architecture
// uses others than Llama's (a NULL field: Llama's name).
typedef struct {
    const char *n_embd, *n_ff, *n_layer, *n_head, *n_ctx, *eps;
    const char *const *act;   // keys naming the activation, the first present one is checked against hf_acts
    int ff_mult;              // n_ff absent or null: ff_mult * n_embd (GPT-2's n_inner); 0: it is required
    bool tied_default;        // tie_word_embeddings when config.json does not say (transformers' default)
} qt_hf_keys;

#define QT_MAX_LINEARS 32
#define QT_MAX_ACTS 16

typedef struct qt_arch_desc {
    const char *name;                  // "llama"
    const char *const *gguf_names;     // general.architecture values, NULL-terminated
    const char *const *hf_names;       // config.json model_type values, NULL-terminated
    const char *const *hf_acts;        // accepted config.json hidden_act values, NULL-terminated
    bool moe;                          // sparse mixture of experts: the config has n_expert, n_expert_used
                                       // (GGUF <arch>.expert_count / expert_used_count; HF num_local_experts /
                                       // num_experts_per_tok); GGUF files name it like its dense sibling
    qt_rope_type gguf_rope;            // RoPE pairing of q/k rows in GGUF files (HF files: NEOX)
    const qt_tensor_desc *globals;     // slots QT_G_TOK_EMBD, QT_G_OUT_NORM, QT_G_OUTPUT, then the arch's
    int n_globals;
    const qt_tensor_desc *layer;       // per-layer slots
    int n_layer_tensors;
    const qt_linear_desc *linears;
    int n_linears;
    uint64_t default_targets;          // bit i = linears[i]: PEFT's default target_modules
    // Per-token widths of the buffers a layer's forward fills and its
    // backward reads (kept per layer in training, one set in inference), of
    // the forward's temporaries (shared by all layers; the backward may
    // recompute into them) and of the backward's gradient buffers (shared).
    const qt_dim *acts;
    int n_acts;
    const qt_dim *work;
    int n_work;
    const qt_dim *grads;
    int n_grads;
    // Bit i: acts[i] can be recomputed by layer_backward from the layer's
    // input when qt_fwd.recompute is set (training then keeps one shared
    // buffer for it instead of one per layer: less memory, a few more FLOPs).
    uint64_t act_recompute;
    // Optional: architecture-specific checks after the common
    // hyper-parameters are read (QT_ERR, logged, refuses the file).
    int (*check)(qt_model *m);
    // Optional: QT_ARCH_* flags; the gated MLP's activation; config.json's
    // names (NULL: Llama's); the prefix transformers' names (hf) start with
    // that checkpoints saved from the base model leave out ("transformer."
    // in the original GPT-2 files), or NULL.
    unsigned flags;
    qt_ffn_act ffn_act;
    const qt_hf_keys *hf_keys;
    const char *hf_alt_prefix;
    // Optional: the name of an operation (backend.h) the layers need that
    // backend be does not have, or NULL (qt_model_bind refuses the model).
    const char *(*missing_op)(const qt_backend *be);
    // Layer il: out (N, C) = layer(x (N, C)); out never aliases x. A: its
    // activation buffers (acts order), W: the work buffers, ax: per linear of
    // the architecture, the trained adapter's saved drop(x) A^T (N, rank)
    // (training) or NULL.
    void (*layer_forward)(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *ax,
                          const float *x, float *out);
    // dx (N, C) = d loss / d x of layer il given dout = d loss / d out;
    // adapter gradients += . x, A, ax as the forward left them; G: the
    // gradient buffers (grads order).
    void (*layer_backward)(const qt_fwd *f, int il, float *const *A, float *const *W, float *const *G,
                           float *const *ax, const float *x, const float *dout, float *dx);
    // Optional, NULL for the Llama way: x (N, C) = the token embedding's rows
    // (tokens host (N)); the final norm before the output head, out (n, C) =
    // RMSNorm(x) with QT_G_OUT_NORM (rstd (n) kept unless NULL), and its
    // backward (dx += ).
    void (*embed)(const qt_fwd *f, float *x, const int32_t *tokens);
    void (*final_norm)(const qt_fwd *f, float *out, float *rstd, const float *x, int64_t n);
    void (*final_norm_backward)(const qt_fwd *f, float *dx, const float *dout, const float *x, const float *rstd,
                                int64_t n);
} qt_arch_desc;

// The registry (arch.c): by GGUF general.architecture or HF model_type.
// NULL (logged with the list of supported names) when unknown. llama.cpp
// names a mixture of experts like its dense sibling ("llama" with
// llama.expert_count > 0 is Mixtral): _moe finds that variant.
const qt_arch_desc *qt_arch_find_gguf(const char *path, const char *name);
const qt_arch_desc *qt_arch_find_gguf_moe(const char *path, const char *name);
const qt_arch_desc *qt_arch_find_hf(const char *path, const char *model_type);
// "llama, qwen2" / "llama, mistral, qwen2": the names the registry knows.
void qt_arch_list(char *buf, size_t cap, bool hf);

int64_t qt_dim_size(const qt_config *c, qt_dim d);

// The first linear `name` names (qt_arch_linear_match), or -1.
int qt_arch_linear_find(const qt_arch_desc *a, const char *name, size_t len);
// PEFT's module name of linear i: the last part of its hf path ("q_proj").
const char *qt_arch_linear_module(const qt_arch_desc *a, int i);
// Every linear `name` names (qtune's name, or a PEFT target: its module
// name or a dotted suffix of its path, "c_proj" = both of GPT-2's,
// "attn.c_proj" one), as a bit mask; 0 when none.
uint64_t qt_arch_linear_match(const qt_arch_desc *a, const char *name, size_t len);
// The PEFT target_modules entry for linear i: its module name, or the
// shortest dotted suffix of its path no other linear shares ("attn.c_proj").
// Written to buf (cap bytes); returns buf.
const char *qt_arch_linear_target(const qt_arch_desc *a, int i, char *buf, size_t cap);
// Whether linear i is an expert linear (its weight slot is QT_TF_EXPERT).
static inline bool qt_arch_linear_expert(const qt_arch_desc *a, int i) {
    return (a->layer[a->linears[i].weight].flags & QT_TF_EXPERT) != 0;
}
// Rows linear i sees per token of a batch: n_expert_used for an expert
// linear (each token goes to that many experts), else 1.
int64_t qt_arch_linear_rows(const qt_config *c, const qt_arch_desc *a, int i);

#endif
