// model.h: a model bound to its weights (llama2.c's Config + Weights),
// loaded from a GGUF file or a Hugging Face folder, for any architecture in
// the registry (arch.h): the loader reads the common hyper-parameters, then
// binds every tensor the architecture's table names, checking shapes and
// types.
//
// Weights are zero-copy views into the memory-mapped files in their stored
// type (F32/F16/BF16/quantized). Only small vectors that the layers need in
// float32 (norm weights, biases) are converted, into one owned buffer.
//
// Q/K head order: GGUF llama files store q/k rows for interleaved-pair RoPE
// ("norm"); HF checkpoints store them permuted for rotate_half ("neox"). The
// two are the same function up to a fixed permutation of dimensions inside
// each head, which attention scores are invariant to, so we keep the stored
// order and pick the matching RoPE variant instead of permuting weights.
#ifndef QT_MODEL_H
#define QT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/types.h"
#include "model/arch.h"
#include "tokenizer/tokenizer.h"

struct qt_config {
    int n_vocab;
    int n_embd;        // C
    int n_ff;          // hidden size of the MLP
    int n_layer;
    int n_head;        // NH (query heads)
    int n_head_kv;     // key/value heads (GQA: n_head % n_head_kv == 0)
    int head_dim;      // HS
    int n_ctx_train;
    float rms_eps;     // the norm's epsilon (RMSNorm, or LayerNorm where the architecture has it)
    float rope_theta;
    qt_rope_type rope_type;
    bool tied_output;  // output head shares the token embedding
    int n_swa;         // sliding attention window (Phi-3's sliding_window), 0: none
    int n_pos_max;     // positions a sequence may reach (learned position rows, the window), 0: no limit
    int n_expert;      // experts per MoE layer (0: dense)
    int n_expert_used; // experts each token is routed to (top-k)
};

struct qt_model {
    qt_config cfg;
    const qt_arch_desc *arch;   // its description (arch.h); never NULL
    qt_tensor *globals;         // (arch->n_globals): token embedding, output norm, output head, ...
    qt_tensor *tensors;         // (n_layer, arch->n_layer_tensors); a QT_TF_EXPERT slot holds one expert's
                                // type and shape with data == NULL (the experts are in `experts`)
    qt_tensor *experts;         // (n_layer, arch->n_layer_tensors, n_expert) QT_TF_EXPERT slots; NULL if dense
    qt_tensor rope_freqs;       // (HS/2) F32 divisors of the RoPE frequencies (Llama 3 scaling), or absent

    qt_tokenizer *tok;          // NULL for an HF folder without a tokenizer we can read
    char *path;
    char *arch_name;            // as in the file ("llama", "qwen2", "mistral")
    char *name;                 // general.name or the folder name
    qt_gguf *gguf;              // the source, one of the two
    qt_st_set *st;
    float *owned;               // float32 copies of small vectors
    size_t n_owned, cap_owned;
    void **bufs;                // requantized weights (qt_model_quantize)
    size_t *buf_sizes;
    int n_bufs;
    qt_backend *be;             // the backend its tensors are bound to (borrowed)
};

static inline const qt_tensor *qt_model_global(const qt_model *m, int slot) { return &m->globals[slot]; }
static inline const qt_tensor *qt_model_tensor(const qt_model *m, int il, int slot) {
    return &m->tensors[(size_t)il * m->arch->n_layer_tensors + slot];
}
// The weight of linear `lin` in layer il (of an expert linear: one
// expert's shape and type, no data; qt_model_expert_linear has the weights).
static inline const qt_tensor *qt_model_linear(const qt_model *m, int il, int lin) {
    return qt_model_tensor(m, il, m->arch->linears[lin].weight);
}
// Expert e of a QT_TF_EXPERT slot / of an expert linear of layer il.
static inline const qt_tensor *qt_model_expert(const qt_model *m, int il, int slot, int e) {
    return &m->experts[((size_t)il * m->arch->n_layer_tensors + slot) * m->cfg.n_expert + e];
}
static inline const qt_tensor *qt_model_expert_linear(const qt_model *m, int il, int lin, int e) {
    return qt_model_expert(m, il, m->arch->linears[lin].weight, e);
}

// Load a .gguf file or a Hugging Face folder (config.json + safetensors).
// Its tensors are bound to the CPU backend (dev == data) until
// qt_model_bind moves them. NULL on error, logged with the file and the problem.
qt_model *qt_model_load(const char *path);
void qt_model_free(qt_model *m);   // NULL is a no-op (unbinds from its backend first)
// Bind every tensor to backend be (upload to a device; borrowed, must
// outlive the model or a later bind). QT_ERR (logged) if they do not fit.
int qt_model_bind(qt_model *m, qt_backend *be);

// Convert every LoRA-targetable projection matrix to `type` in memory (QLoRA
// on an F16/BF16/F32 file: "--quantize q4_0"); embeddings, norms and the output
// head stay as stored. Matrices already of that type, or whose row length is
// not a multiple of the type's block, are kept. QT_ERR (logged) if the type
// has no quantizer.
int qt_model_quantize(qt_model *m, qt_type type);
// The same by --quantize name: a type ("q4_0", "nf4": bitsandbytes NF4,
// block 64) or "nf4-dq" (NF4 with bitsandbytes' double quantization of the
// absmax, bnb_4bit_use_double_quant). QT_ERR (logged) for an unknown name.
int qt_model_quantize_name(qt_model *m, const char *name);

// n bytes (zero-filled) owned by m until qt_model_free, for weights the
// loader converts (requantized matrices, repacked bitsandbytes 4-bit);
// NULL (logged with `what`) on failure.
void *qt_model_own_buffer(qt_model *m, size_t n, const char *what);

// --no-mmap: copies every weight still read from the file mapping into one
// buffer of m's own (2 MiB-aligned anonymous memory, transparent huge pages
// where the kernel gives them) and points the tensors there. Decode reads
// the weights once per token; from 4 KiB page-cache pages the TLB misses of
// that stream cost 12-22% of a 7B model's decode time here (BENCHMARKS.md). The price: load
// time (first-touch faults of fresh memory) and the weights held twice
// while the page cache keeps the file. Call before qt_model_bind to a
// device (a device backend keeps its own copy: then nothing is done).
int qt_model_copy_weights(qt_model *m);

// Parameter count and bytes of the weights as stored.
int64_t qt_model_n_params(const qt_model *m);
size_t qt_model_weight_bytes(const qt_model *m);

#endif
