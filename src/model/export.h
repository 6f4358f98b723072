// export.h: writing a loaded model as a llama.cpp GGUF file: `qtune fuse`
// (merge a LoRA adapter into the weights), `qtune quantize` (re-encode the
// matrices) and `qtune convert` (Hugging Face folder -> GGUF) are all this one
// writer with different parameters.
//
// Names and metadata follow llama.cpp (convert_hf_to_gguf.py, gguf-py
// constants): token_embd / output_norm / output / blk.N.attn_q ..., the
// <arch>.* hyper-parameter keys, tokenizer.ggml.*. q/k rows of a llama model
// loaded from an HF folder are permuted to GGUF's interleaved RoPE order, as
// convert_hf_to_gguf.py's LlamaModel.permute does. Which tensors stay in high
// precision follows llama-quantize (src/llama-quant.cpp).
#ifndef QT_EXPORT_H
#define QT_EXPORT_H

#include <stdbool.h>

#include "io/gguf.h"
#include "model/lora.h"
#include "model/model.h"

typedef struct {
    int type;                  // qt_type for the weight matrices; < 0 keeps each tensor's stored type
    const qt_lora *lora;       // merged into the weights when not NULL: W' = W + lora_scale * s * B A
    float lora_scale;
    const char *tokenizer_gguf;// HF source without tokenizer.json: copy tokenizer.ggml.* from this .gguf
    const char *name;          // general.name (default: the model's name)
} qt_export_params;

qt_export_params qt_export_defaults(void);

// Writes m (with p applied) to path atomically. GGUF source: every metadata
// key is copied (general.file_type updated), tensors the model does not use are
// copied as they are. HF source: llama.cpp's metadata from config.json and the
// tokenizer (tokenizer.json + tokenizer_config.json's chat_template, or
// p->tokenizer_gguf). QT_OK / QT_ERR (logged).
int qt_export_gguf(const qt_model *m, const qt_export_params *p, const char *path);

// The type llama-quantize gives a tensor of row length ne0 named `name` when the
// requested type is `type`: 1-D tensors and norms stay F32; output.weight (and
// token_embd.weight when the output is tied) become Q6_K (Q8_0 if the row does
// not fit the block, or when Q8_0 was asked); rows that are not a multiple of
// the block fall back (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K->Q4_0,
// then F16).
qt_type qt_export_tensor_type(const char *name, int n_dims, int64_t ne0, qt_type type, bool tied_output);

// llama.cpp's LLAMA_FTYPE value for general.file_type of a model quantized to
// type; -1 for a type llama.cpp has no file type for.
int qt_export_file_type(qt_type type);

// tokenizer.ggml.* keys for tokenizer t; hf_dir (may be NULL) supplies merges
// (tokenizer.json) and the chat template (tokenizer_config.json). QT_ERR (logged).
int qt_export_tokenizer_kv(qt_gguf_writer *w, const qt_tokenizer *t, const char *hf_dir);

#endif
