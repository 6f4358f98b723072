// cmd-info.c: `qtune info MODEL`: what a model is and what it needs to run.
// Given a llama.cpp GGUF LoRA file (general.type "adapter"), or an adapter
// folder / file of qtune's other forms, it describes the adapter instead:
// rank, alpha, targets, layers, parameters (and the step of a training run).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "backend/backend.h"
#include "model/context.h"

static void add_type(int64_t *count, size_t *bytes, qt_type type, size_t nbytes) {
    if ((int)type >= 0 && type < QT_TYPE_COUNT) {
        count[type]++;
        bytes[type] += nbytes;
    }
}

// GGUF LoRA: metadata and the tensors' ranks, layers and targets.
static int info_gguf_lora(const char *path, qt_gguf *g) {
    const char *arch = "?", *atype = "?", *name = NULL;
    float alpha = 0;
    qt_gguf_get_str(g, "general.architecture", &arch, false);
    qt_gguf_get_str(g, "adapter.type", &atype, false);
    qt_gguf_get_str(g, "general.name", &name, false);
    qt_gguf_get_f32(g, "adapter.lora.alpha", &alpha, false);
    int rank = 0, first = 1 << 30, last = -1;
    int64_t params = 0;
    char targets[256] = "";
    for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
        char nm[128], mod[64], which;
        int il;
        snprintf(nm, sizeof(nm), "%.*s", (int)t->name.len, t->name.data);
        params += t->ne[0] * t->ne[1];
        if (sscanf(nm, "blk.%d.%63[a-z_].weight.lora_%c", &il, mod, &which) != 3) continue;
        first = il < first ? il : first;
        last = il > last ? il : last;
        if (which == 'a') rank = (int)t->ne[1];
        char pat[80];
        snprintf(pat, sizeof(pat), " %s", mod);
        if (!strstr(targets, pat) && strlen(targets) + strlen(pat) < sizeof(targets)) strcat(targets, pat);
    }
    printf("adapter:        %s\n", path);
    printf("format:         llama.cpp GGUF LoRA (gguf version %u)\n", qt_gguf_version(g));
    if (name) printf("name:           %s\n", name);
    printf("architecture:   %s\n", arch);
    printf("adapter type:   %s\n", atype);
    printf("rank:           %d\n", rank);
    printf("alpha:          %g (scale alpha / rank = %g)\n", alpha, rank ? (alpha > 0 ? alpha : rank) / rank : 0.0);
    printf("targets:       %s\n", targets[0] ? targets : " (none)");
    if (last >= 0) printf("layers:         %d-%d\n", first, last);
    printf("tensors:        %lld (%lld parameters)\n", (long long)qt_gguf_n_tensors(g), (long long)params);
    return 0;
}

// A PEFT / mlx-lm folder, or a training run: its config and state files.
static int info_adapter_dir(const char *path) {
    static const char *const files[] = { "adapter_config.json", "training_state.json" };
    int shown = 0;
    for (int k = 0; k < 2; k++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, files[k]);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        char *text = qt_read_file(p, NULL);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        qt_free(text);
        if (!j) continue;
        if (!shown++) printf("adapter:        %s\n", path);
        printf("%s:\n", files[k]);
        for (const cJSON *e = j->child; e; e = e->next) {
            char *v = cJSON_PrintUnformatted(e);
            printf("  %-24s %s\n", e->string, v);
            cJSON_free(v);
        }
        cJSON_Delete(j);
    }
    if (!shown) {
        qt_log_error("%s: a folder without a model (config.json) or an adapter (adapter_config.json)", path);
        return 1;
    }
    return 0;
}

static void quiet_sink(const char *line, void *ud) { (void)line; (void)ud; }

static bool is_gguf_adapter(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = { 0 };
    bool gguf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    if (!gguf) return false;
    qt_log_set_sink(quiet_sink, NULL);   // a broken file is reported by the model loader below
    qt_gguf *g = qt_gguf_open(path);
    qt_log_set_sink(NULL, NULL);
    const char *type = NULL;
    bool adapter = g && qt_gguf_get_str(g, "general.type", &type, false) == QT_OK && type && !strcmp(type, "adapter");
    qt_gguf_close(g);
    return adapter;
}

int qt_cmd_info(int argc, char **argv) {
    const char *tok_path = NULL;
    int n_ctx = 0, verbose = 1;
    bool list = false, devices = false;
    const qt_opt opts[] = {
        { "ctx-size", 'c', QT_OPT_INT, &n_ctx, "N", "context size for the memory estimate (default: training context)", NULL, "[0,10000000]" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        { "tensors", 0, QT_OPT_FLAG, &list, NULL, "list every tensor" },
        { "devices", 0, QT_OPT_FLAG, &devices, NULL, "list the GPUs and their memory (no MODEL needed)" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "info", "MODEL|ADAPTER [options] | --devices",
                               "Show the architecture, hyper-parameters, tensor types, parameter count and memory needs "
                               "(of an adapter: its form, rank, alpha, targets and layers).",
                               opts, 0, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (devices) return qt_backend_cuda_list() == QT_OK ? 0 : 1;
    if (n_pos < 1) {
        qt_log_error("qtune info: give a MODEL (or --devices)");
        return 2;
    }
    if (is_gguf_adapter(pos[0])) {
        qt_gguf *g = qt_gguf_open(pos[0]);
        int rc = g ? info_gguf_lora(pos[0], g) : 1;
        qt_gguf_close(g);
        return rc;
    }
    qt_log_set_level(verbose);
    struct stat st;
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "%s/config.json", pos[0]);
    if (stat(pos[0], &st) == 0 && S_ISDIR(st.st_mode) && stat(cfg, &st) != 0) return info_adapter_dir(pos[0]);
    qt_model *m = qt_cli_load_model(pos[0], tok_path, false);
    if (!m) return 1;
    const qt_config *c = &m->cfg;
    printf("model:          %s\n", m->path);
    printf("name:           %s\n", m->name);
    printf("format:         %s\n", m->gguf ? "GGUF" : "Hugging Face safetensors");
    if (m->gguf) printf("gguf version:   %u\n", qt_gguf_version(m->gguf));
    printf("architecture:   %s (%s)\n", m->arch_name, m->arch->name);
    printf("vocabulary:     %d%s\n", c->n_vocab, m->tok ? "" : " (no tokenizer loaded)");
    printf("embedding:      %d\n", c->n_embd);
    printf("feed-forward:   %d\n", c->n_ff);
    if (c->n_expert > 0) printf("experts:        %d, %d per token\n", c->n_expert, c->n_expert_used);
    printf("layers:         %d\n", c->n_layer);
    printf("heads:          %d (key/value heads %d, head size %d)\n", c->n_head, c->n_head_kv, c->head_dim);
    printf("context:        %d (training)\n", c->n_ctx_train);
    printf("rope:           %s, theta %g%s\n", c->rope_type == QT_ROPE_NEOX ? "neox" : "norm", c->rope_theta,
           m->rope_freqs.data ? ", llama3 frequency scaling" : "");
    printf("rms epsilon:    %g\n", c->rms_eps);
    printf("output head:    %s\n", c->tied_output ? "tied to the token embedding" : "separate");
    if (m->tok)
        printf("special tokens: bos %d, eos %d, add bos %s\n", qt_tokenizer_bos(m->tok), qt_tokenizer_eos(m->tok),
               qt_tokenizer_add_bos(m->tok) ? "yes" : "no");

    int64_t count[QT_TYPE_COUNT] = {0};
    size_t bytes[QT_TYPE_COUNT] = {0}, total = 0;
    int64_t n_tensors = m->gguf ? qt_gguf_n_tensors(m->gguf) : qt_st_n_tensors(m->st);
    if (list) printf("tensors:\n");
    for (int64_t i = 0; i < n_tensors; i++) {
        if (m->gguf) {
            const qt_gguf_tensor *t = qt_gguf_tensor_at(m->gguf, i);
            add_type(count, bytes, t->type, t->nbytes);
            total += t->nbytes;
            if (list)
                printf("  %-36.*s %-6s [%lld, %lld, %lld, %lld] %zu bytes\n", (int)t->name.len, t->name.data,
                       qt_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], t->nbytes);
        } else {
            const qt_st_tensor *t = qt_st_tensor_at(m->st, i);
            add_type(count, bytes, t->type, t->nbytes);
            total += t->nbytes;
            if (list) {
                printf("  %-48s %-6s [", t->name, qt_type_name(t->type));
                for (int d = 0; d < t->n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
                printf("] %zu bytes\n", t->nbytes);
            }
        }
    }
    printf("tensor types:  ");
    for (int t = 0; t < QT_TYPE_COUNT; t++)
        if (count[t]) printf(" %s x%lld (%.2f MiB)", qt_type_name(t), (long long)count[t], bytes[t] / 1048576.0);
    printf("\n");
    int64_t n_nf4 = 0;   // bitsandbytes 4-bit weights, repacked as NF4 at load
    for (size_t i = 0; i < (size_t)c->n_layer * m->arch->n_layer_tensors; i++)
        n_nf4 += m->tensors[i].data && m->tensors[i].type == QT_TYPE_NF4;
    for (size_t i = 0; m->experts && i < (size_t)c->n_layer * m->arch->n_layer_tensors * c->n_expert; i++)
        n_nf4 += m->experts[i].data && m->experts[i].type == QT_TYPE_NF4;
    if (n_nf4) printf("loaded as:      nf4 x%lld (bitsandbytes 4-bit, 4.5 bits per weight in memory)\n", (long long)n_nf4);
    int64_t np = qt_model_n_params(m);
    printf("parameters:     %lld (%.3f B), %.2f bits per weight\n", (long long)np, np / 1e9,
           np ? 8.0 * (double)qt_model_weight_bytes(m) / (double)np : 0.0);
    printf("weights:        %.2f MiB (%zu tensors, %.2f MiB of tensor data)\n", qt_model_weight_bytes(m) / 1048576.0,
           (size_t)n_tensors, total / 1048576.0);
    int ctx = n_ctx ? n_ctx : c->n_ctx_train;
    qt_type kvt;
    size_t kv = qt_ctx_kv_bytes(m, ctx, &kvt);
    size_t run = qt_ctx_bytes(m, qt_n_cpus(), ctx, 256, false);
    printf("to run:         %.2f MiB at context %d = weights %.2f MiB (memory-mapped) + KV cache %.2f MiB (%s) + buffers "
           "%.2f MiB\n",
           (qt_model_weight_bytes(m) + run) / 1048576.0, ctx, qt_model_weight_bytes(m) / 1048576.0, kv / 1048576.0,
           qt_type_name(kvt), (run - kv) / 1048576.0);
    qt_model_free(m);
    return 0;
}
