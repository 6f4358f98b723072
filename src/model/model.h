// model.h: a Llama-family model bound to its weights (llama2.c's Config +
// Weights), loaded from a GGUF file or a Hugging Face folder.
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

#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/types.h"
#include "tokenizer/tokenizer.h"

typedef enum { QT_ARCH_LLAMA = 0, QT_ARCH_QWEN2 = 1 } qt_arch;
typedef enum { QT_ROPE_NORM = 0, QT_ROPE_NEOX = 2 } qt_rope_type;  // llama.cpp's numbering

typedef struct {
    qt_arch arch;
    int n_vocab;
    int n_embd;        // C
    int n_ff;          // hidden size of the SwiGLU MLP
    int n_layer;
    int n_head;        // NH (query heads)
    int n_head_kv;     // key/value heads (GQA: n_head % n_head_kv == 0)
    int head_dim;      // HS
    int n_ctx_train;
    float rms_eps;
    float rope_theta;
    qt_rope_type rope_type;
    bool tied_output;  // output head shares the token embedding
} qt_config;

// A 2-D view of a weight: ne0 elements per row (input dim), ne1 rows (output dim).
typedef struct {
    qt_type type;
    int64_t ne0, ne1;
    const void *data;    // NULL if the tensor is absent (optional biases)
} qt_tensor;

typedef struct {
    const float *attn_norm;     // (C)
    qt_tensor wq;               // (NH*HS, C)
    qt_tensor wk;               // (NKV*HS, C)
    qt_tensor wv;               // (NKV*HS, C)
    qt_tensor wo;               // (C, NH*HS)
    const float *bq, *bk, *bv;  // (NH*HS), (NKV*HS), (NKV*HS); qwen2 only, else NULL
    const float *ffn_norm;      // (C)
    qt_tensor w_gate;           // (n_ff, C)
    qt_tensor w_up;             // (n_ff, C)
    qt_tensor w_down;           // (C, n_ff)
} qt_layer;

typedef struct {
    qt_config cfg;
    qt_tensor tok_embd;         // (n_vocab, C)
    const float *out_norm;      // (C)
    qt_tensor output;           // (n_vocab, C); equals tok_embd when tied
    const float *rope_freqs;    // (HS/2) divisors of the RoPE frequencies (Llama 3 scaling), or NULL
    qt_layer *layers;           // (n_layer)

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
} qt_model;

// Load a .gguf file or a Hugging Face folder (config.json + safetensors).
// NULL on error, logged with the file and the problem.
qt_model *qt_model_load(const char *path);
void qt_model_free(qt_model *m);   // NULL is a no-op

// Convert every projection matrix (attention, MLP) to `type` in memory (QLoRA
// on an F16/BF16/F32 file: "--quantize q4_0"); embeddings, norms and the output
// head stay as stored. Matrices already of that type, or whose row length is
// not a multiple of the type's block, are kept. QT_ERR (logged) if the type
// has no quantizer.
int qt_model_quantize(qt_model *m, qt_type type);

// Parameter count and bytes of the weights as stored.
int64_t qt_model_n_params(const qt_model *m);
size_t qt_model_weight_bytes(const qt_model *m);
const char *qt_arch_name(qt_arch a);

#endif
