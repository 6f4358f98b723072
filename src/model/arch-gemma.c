// arch-gemma.c: Gemma (first generation, GemmaForCausalLM): the Llama block
// (arch-llama.c, same tensor names in both formats) with
//   - GeGLU: gelu(gate) * up, GELU with the tanh approximation;
//   - RMSNorm scaling by (1 + w): transformers stores w - 1, llama.cpp's
//     converter adds the 1, so the loader adds it to HF norms
//     (QT_ARCH_HF_NORM_PLUS1) and both forms then run the plain RMSNorm;
//   - the embedding scaled by sqrt(n_embd) (float32, as transformers'
//     normalizer and llama.cpp's ggml_scale);
//   - head_dim from the config (n_head * head_dim may differ from n_embd:
//     gemma-7b has 16 x 256 = 4096 > 3072), the head tied to the embedding,
//     RoPE in rotate_half (NEOX) order in GGUF files too.
// The activation: Gemma 1 checkpoints say hidden_act "gelu" but are run with
// the tanh approximation (transformers' hidden_activation, default
// gelu_pytorch_tanh since v4.38; llama.cpp's LLM_ARCH_GEMMA); we always do.
// References: transformers modeling_gemma.py; llama.cpp's llm_build_gemma and
// convert_hf_to_gguf.py GemmaModel (norm + 1, no lm_head).
#include <math.h>

#include "model/arch-llama.h"
#include "model/engine.h"
#include "model/model.h"

// x (N, C) = wte[tokens] * sqrt(C)
static void embed(const qt_fwd *f, float *x, const int32_t *tokens) {
    const int64_t C = f->m->cfg.n_embd;
    f->be->ops->embed(f->be, x, tokens, f->N, qt_model_global(f->m, QT_G_TOK_EMBD));
    f->be->ops->scale(f->be, f->N * C, (float)sqrt((double)C), x);
}

static const char *missing_op(const qt_backend *be) {
    return !be->ops->geglu ? "geglu" : !be->ops->geglu_backward ? "geglu_backward" : NULL;
}

static const char *const gguf_names[] = { "gemma", NULL };
static const char *const hf_names[] = { "gemma", NULL };
static const char *const hf_acts[] = { "gelu_pytorch_tanh", "gelu_new", "gelu", NULL };
static const char *const act_keys[] = { "hidden_activation", "hidden_act", NULL };
static const qt_hf_keys hf_keys = { .act = act_keys, .tied_default = true };

const qt_arch_desc qt_arch_gemma = {
    .name = "gemma",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = hf_acts,
    .gguf_rope = QT_ROPE_NEOX,
    .globals = qt_llama_globals,
    .n_globals = QT_G_FIRST_ARCH,
    .layer = qt_llama_tensors,
    .n_layer_tensors = QT_LLAMA_N_TENSORS,
    .linears = qt_llama_linears,
    .n_linears = QT_LLAMA_N_LINEARS,
    .default_targets = (1u << QT_LLAMA_Q) | (1u << QT_LLAMA_V),
    .acts = qt_llama_acts,
    .n_acts = QT_LLAMA_N_ACTS,
    .work = qt_llama_work,
    .n_work = QT_LLAMA_N_WORK,
    .grads = qt_llama_grads,
    .n_grads = QT_LLAMA_N_GRADS,
    .flags = QT_ARCH_HF_NORM_PLUS1,
    .ffn_act = QT_FFN_GELU_TANH,
    .hf_keys = &hf_keys,
    .missing_op = missing_op,
    .layer_forward = qt_llama_layer_forward,
    .layer_backward = qt_llama_layer_backward,
    .embed = embed,
};
