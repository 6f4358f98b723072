// lora-io.h: adapters on disk in Hugging Face PEFT's layout:
//   DIR/adapter_model.safetensors  base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight (r, in)
//                                  ... .lora_B.weight (out, r), F32
//   DIR/adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout,
//                                  target_modules, use_rslora, bias, base_model_name_or_path
// Experts: base_model.model.model.layers.N.block_sparse_moe.experts.E.w1.lora_A.weight,
// one pair per expert, as PEFT saves Mixtral.
// Q/K rows: PEFT adapters live in HF's rotate_half row order. A model loaded
// from a llama GGUF keeps interleaved-pair order (model.h), so B rows of q and
// k are permuted per head on save and permuted back on load for such models.
#ifndef QT_LORA_IO_H
#define QT_LORA_IO_H

#include "model/lora.h"
#include "model/model.h"

// Writes both files atomically into dir (created if missing);
// base_model_name_or_path is the model path as the user gave it (m->path).
// QT_OK / QT_ERR (logged).
int qt_lora_save_peft(const qt_lora *l, const qt_model *m, const char *dir);
// Reads a PEFT adapter folder (or the adapter_model.safetensors inside it) for
// model m; shapes are checked against the model. NULL on error (logged).
qt_lora *qt_lora_load_peft(const qt_model *m, const char *path);

// llama.cpp GGUF LoRA adapter (lora-gguf.c): general.type "adapter",
// adapter.type "lora", adapter.lora.alpha, general.architecture of the base;
// blk.N.attn_q.weight.lora_a ne [in, r], .lora_b ne [r, out], F32, Q/K rows in
// GGUF (interleaved RoPE) order. Written atomically. QT_OK / QT_ERR (logged).
int qt_lora_save_gguf(const qt_lora *l, const qt_model *m, const char *path);
qt_lora *qt_lora_load_gguf(const qt_model *m, const char *path);
// Whether B rows of linear t must be permuted between the model's order and
// GGUF order (a q/k projection of a model whose RoPE order is not the GGUF
// architecture's, e.g. a llama model loaded from an HF folder) / HF order (a
// llama model loaded from GGUF).
bool qt_lora_gguf_needs_permute(const qt_model *m, int t);
bool qt_lora_hf_needs_permute(const qt_model *m, int t);

// mlx-lm adapter (lora-mlx.c): DIR/adapters.safetensors with
// model.layers.N.self_attn.q_proj.lora_a (in, r) and .lora_b (r, out), and
// DIR/adapter_config.json with lora_parameters {rank, scale}; y += scale * x A B.
// A path ending in .npz is mlx-examples lora.py's adapters.npz (same names,
// scale 20 unless an mlx-lm adapter_config.json lies beside it).
qt_lora *qt_lora_load_mlx(const qt_model *m, const char *path);
// Writes path (an .npz: lora.py's form, our scale folded into B so that its
// fixed scale 20 gives the same adapter; else mlx-lm's adapters.safetensors
// with adapter_config.json beside it). Atomic per file. QT_OK / QT_ERR (logged).
int qt_lora_save_mlx(const qt_lora *l, const qt_model *m, const char *path);

// Any of them, by content: a .gguf file, an .npz, a folder (or file) holding
// adapter_model.safetensors (PEFT) or adapters.safetensors (mlx-lm). NULL on
// error, logged naming the file.
qt_lora *qt_lora_load(const qt_model *m, const char *path);

// The form an output path asks for: *.gguf (llama.cpp GGUF LoRA), *.npz
// (lora.py), *.safetensors (mlx-lm: the file and adapter_config.json beside
// it), anything else a PEFT folder.
typedef enum { QT_LORA_FMT_PEFT, QT_LORA_FMT_MLX, QT_LORA_FMT_NPZ, QT_LORA_FMT_GGUF } qt_lora_format;
qt_lora_format qt_lora_format_of(const char *path);
const char *qt_lora_format_name(qt_lora_format f);   // "PEFT folder", ...
// Writes l to path in the form qt_lora_format_of(path) names (a PEFT folder is
// created). QT_OK / QT_ERR (logged).
int qt_lora_save(const qt_lora *l, const qt_model *m, const char *path);

// Shared by the adapter readers: resolves PATH (an adapter folder, or a
// weights file inside one) to *file (folder/default_file, or PATH) and
// *cfg_path (folder/adapter_config.json), both malloc'd, and returns the
// parsed config JSON object, or NULL after one error naming the file.
struct cJSON;
struct cJSON *qt_lora_read_config(const char *path, const char *default_file, char **file, char **cfg_path);

// A tensor name of an adapter file: prefix + the linear's path with the
// layer number (its PEFT/HF path, or "blk.N.<gguf name>" when gguf) + sfx_a
// (0, A) or sfx_b (1, B), for any linear of a. QT_OK with *il, *t, *ab and
// *e: the expert number of an expert linear's PEFT path
// (block_sparse_moe.experts.E.w1), else -1.
int qt_lora_match_key(const qt_arch_desc *a, const char *name, const char *prefix, bool gguf, const char *sfx_a,
                      const char *sfx_b, int *il, int *t, int *e, int *ab);

// Shared by the safetensors adapter readers: every tensor name of s must parse
// with parse_key (layer, target, expert, 0 = A / 1 = B) for a layer (and an
// expert) of m; sets the targets present and the first adapted layer. QT_ERR
// after one error naming file and tensor (or "no LoRA tensors").
struct qt_st_set;
typedef int (*qt_lora_key_parser)(const qt_arch_desc *a, const char *name, int *il, int *t, int *e, int *ab);
int qt_lora_scan_keys(const qt_model *m, const struct qt_st_set *s, const char *file, qt_lora_key_parser parse_key,
                      uint64_t *mask, int *first);

#endif
