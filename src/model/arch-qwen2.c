// arch-qwen2.c: Qwen2 / Qwen2.5 (dense): the Llama block (arch-llama.c) with
// q, k and v biases required, and NEOX (rotate_half) RoPE in GGUF files too,
// so its q/k rows are never permuted between the two formats.
// References: transformers Qwen2ForCausalLM; llama.cpp's LLM_ARCH_QWEN2.
#include <stdio.h>

#include "base/base.h"
#include "model/arch-llama.h"
#include "model/model.h"

// The biases the Llama table marks optional are part of every Qwen2 layer.
static int qwen2_check(qt_model *m) {
    static const int need[] = { QT_LLAMA_BQ, QT_LLAMA_BK, QT_LLAMA_BV };
    for (int il = 0; il < m->cfg.n_layer; il++)
        for (size_t i = 0; i < QT_ARRAY_LEN(need); i++)
            if (!qt_model_tensor(m, il, need[i])->data) {
                const qt_tensor_desc *d = &qt_llama_tensors[need[i]];
                char name[128];
                snprintf(name, sizeof(name), m->gguf ? d->gguf : d->hf, il);
                qt_log_error("%s: missing tensor '%s' (qwen2 layers have q, k and v biases)", m->path, name);
                return QT_ERR;
            }
    return QT_OK;
}

static const char *const gguf_names[] = { "qwen2", NULL };
static const char *const hf_names[] = { "qwen2", NULL };

const qt_arch_desc qt_arch_qwen2 = {
    .name = "qwen2",
    .gguf_names = gguf_names,
    .hf_names = hf_names,
    .hf_acts = qt_llama_hf_acts,
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
    .act_recompute = QT_LLAMA_ACT_RECOMPUTE,
    .check = qwen2_check,
    .layer_forward = qt_llama_layer_forward,
    .layer_backward = qt_llama_layer_backward,
};
