// test-model-errors.c: model files that parse as GGUF / safetensors but do
// not describe a model we can run must be refused with one error line that
// names the file and the problem (wrong architecture, missing or misshapen
// tensors, bad hyper-parameters, bad config.json). Fixtures are written into
// a temporary folder from the real stories260K files.
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "model/model.h"
#include "test.h"

static char g_last[2048];
static int g_n_errors;
static void sink(const char *line, void *ud) {
    (void)ud;
    if (!strncmp(line, "error: ", 7)) g_n_errors++;
    snprintf(g_last, sizeof(g_last), "%s", line);
}

// The load must fail with exactly one error line containing `file` and `word`.
static void expect_fail(const char *path, const char *word) {
    g_last[0] = 0;
    g_n_errors = 0;
    qt_log_set_sink(sink, NULL);
    qt_model *m = qt_model_load(path);
    qt_log_set_sink(NULL, NULL);
    CHECK(m == NULL, "%s: loaded but should fail (%s)", path, word);
    qt_model_free(m);
    CHECK(strstr(g_last, word) != NULL, "%s: error '%s' lacks '%s'", path, g_last, word);
    const char *base = strrchr(path, '/');
    CHECK(strstr(g_last, base ? base + 1 : path) != NULL, "error '%s' does not name the file", g_last);
    CHECK(g_n_errors == 1, "%s: %d error lines, expected one", path, g_n_errors);
}

typedef enum { MUT_NONE, MUT_DROP, MUT_SHAPE } mut_kind;

// Copy of src with overridden keys (set before copying, so they win) and one
// tensor dropped or given a wrong shape.
static void write_variant(const qt_gguf *src, const char *out, const char *key_str, const char *val_str,
                          const char *key_u32, uint32_t val_u32, mut_kind mk, const char *tensor) {
    qt_gguf_writer *w = qt_gguf_writer_init();
    if (key_str) qt_gguf_set_str(w, key_str, val_str);
    if (key_u32) qt_gguf_set_u32(w, key_u32, val_u32);
    qt_gguf_copy_kv(w, src);
    for (int64_t i = 0; i < qt_gguf_n_tensors(src); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(src, i);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.data);
        int64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
        if (tensor && !strcmp(name, tensor)) {
            if (mk == MUT_DROP) continue;
            if (mk == MUT_SHAPE) ne[1] = ne[1] / 2;   // fewer rows: data still in bounds
        }
        qt_gguf_add_tensor(w, name, t->type, t->n_dims, ne, t->data);
    }
    CHECK(qt_gguf_write(w, out) == QT_OK, "writing %s", out);
    qt_gguf_writer_free(w);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/qt-model-errors-XXXXXX";
    QT_ASSERT(mkdtemp(dir));
    char src_path[512], p[768], hf_src[1024];
    snprintf(src_path, sizeof(src_path), "%s/tinystories-260K/stories260K.gguf", test_models_dir());
    snprintf(hf_src, sizeof(hf_src), "%s/tinystories-260K/hf/model.safetensors", test_models_dir());
    char *abs_src = realpath(hf_src, NULL);   // symlinks need an absolute target
    QT_ASSERT(abs_src);
    snprintf(hf_src, sizeof(hf_src), "%s", abs_src);
    free(abs_src);
    qt_gguf *src = qt_gguf_open(src_path);
    CHECK(src != NULL, "cannot open %s", src_path);
    if (!src) TEST_END();

    // a faithful copy loads: the fixtures differ from it in one thing only
    snprintf(p, sizeof(p), "%s/copy.gguf", dir);
    write_variant(src, p, NULL, NULL, NULL, 0, MUT_NONE, NULL);
    qt_model *ok = qt_model_load(p);
    CHECK(ok != NULL, "the unmodified copy must load");
    qt_model_free(ok);

    struct { const char *file, *ks, *vs, *ku; uint32_t vu; mut_kind mk; const char *tensor, *word; } cases[] = {
        { "arch.gguf", "general.architecture", "falcon", NULL, 0, MUT_NONE, NULL, "unsupported architecture 'falcon'" },
        { "missing.gguf", NULL, NULL, NULL, 0, MUT_DROP, "blk.3.ffn_up.weight", "missing tensor 'blk.3.ffn_up.weight'" },
        { "norm.gguf", NULL, NULL, NULL, 0, MUT_DROP, "output_norm.weight", "missing tensor 'output_norm.weight'" },
        { "shape.gguf", NULL, NULL, NULL, 0, MUT_SHAPE, "blk.1.attn_k.weight", "has shape [64, 16], expected [64, 32]" },
        { "embd.gguf", NULL, NULL, NULL, 0, MUT_DROP, "token_embd.weight", "missing tensor 'token_embd.weight'" },
        { "kv.gguf", NULL, NULL, "llama.attention.head_count_kv", 3, MUT_NONE, NULL, "key/value head count" },
        { "rope.gguf", NULL, NULL, "llama.rope.dimension_count", 4, MUT_NONE, NULL, "partial rotary" },
        { "layers.gguf", NULL, NULL, "llama.block_count", 6, MUT_NONE, NULL, "missing tensor 'blk.5.attn_norm.weight'" },
        { "ctype.gguf", "llama.embedding_length", "64", NULL, 0, MUT_NONE, NULL, "llama.embedding_length" },
        { "heads.gguf", NULL, NULL, "llama.attention.head_count", 0, MUT_NONE, NULL, "invalid head count" },
        { "tok.gguf", "tokenizer.ggml.model", "bert", NULL, 0, MUT_NONE, NULL, "bert" },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(cases); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, cases[i].file);
        write_variant(src, p, cases[i].ks, cases[i].vs, cases[i].ku, cases[i].vu, cases[i].mk, cases[i].tensor);
        expect_fail(p, cases[i].word);
    }
    snprintf(p, sizeof(p), "%s/does-not-exist.gguf", dir);
    expect_fail(p, "cannot open");

    // Hugging Face folders: a valid config.json, then one broken field at a time.
    // overrides go first: cJSON returns the first of duplicate keys
    const char *good =
        "{%s \"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 5,"
        " \"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"vocab_size\": 512, \"rms_norm_eps\": 1e-5,"
        " \"tie_word_embeddings\": true, \"hidden_act\": \"silu\"}";
    struct { const char *name, *cfg, *word; } hf[] = {
        { "hf-ok", "", NULL },
        { "hf-json", "{\"model_type\": \"llama\",", "not valid JSON" },
        { "hf-missing", "{\"model_type\": \"llama\", \"hidden_size\": 64}", "missing field \"intermediate_size\"" },
        { "hf-arch", "{\"model_type\": \"gpt_neox\"}", "unsupported architecture 'gpt_neox'" },
        { "hf-yarn", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4},", "rope_scaling type 'yarn'" },
        { "hf-act", "\"hidden_act\": \"gelu\",", "hidden_act" },
        { "hf-int", "\"num_key_value_heads\": 2.5,", "must be an integer" },
        { "hf-tie", "\"tie_word_embeddings\": false,", "missing tensor 'lm_head.weight'" },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(hf); i++) {
        char d[700], cfg[1024];
        snprintf(d, sizeof(d), "%s/%s", dir, hf[i].name);
        mkdir(d, 0700);
        if (hf[i].cfg[0] == '{') snprintf(cfg, sizeof(cfg), "%s", hf[i].cfg);
        else snprintf(cfg, sizeof(cfg), good, hf[i].cfg);
        snprintf(p, sizeof(p), "%s/config.json", d);
        write_text(p, cfg);
        snprintf(p, sizeof(p), "%s/model.safetensors", d);
        QT_ASSERT(symlink(hf_src, p) == 0);
        if (!hf[i].word) {
            qt_model *m = qt_model_load(d);
            CHECK(m != NULL, "the valid HF folder must load");
            qt_model_free(m);
        } else {
            expect_fail(d, hf[i].word);
        }
    }
    // shape mismatch between config and tensors
    {
        char d[700], cfg[1024];
        snprintf(d, sizeof(d), "%s/hf-shape", dir);
        mkdir(d, 0700);
        snprintf(cfg, sizeof(cfg), good, "\"intermediate_size\": 128,");
        snprintf(p, sizeof(p), "%s/config.json", d);
        write_text(p, cfg);
        snprintf(p, sizeof(p), "%s/model.safetensors", d);
        QT_ASSERT(symlink(hf_src, p) == 0);
        expect_fail(d, "mlp.gate_proj.weight' has shape [64, 172], expected [64, 128]");
    }
    // a folder with a config but no weights
    {
        char d[700], cfg[1024];
        snprintf(d, sizeof(d), "%s/hf-noweights", dir);
        mkdir(d, 0700);
        snprintf(cfg, sizeof(cfg), good, "");
        snprintf(p, sizeof(p), "%s/config.json", d);
        write_text(p, cfg);
        g_last[0] = 0;
        qt_log_set_sink(sink, NULL);
        qt_model *m = qt_model_load(d);
        qt_log_set_sink(NULL, NULL);
        CHECK(m == NULL && strstr(g_last, "hf-noweights"), "folder without weights: '%s'", g_last);
        qt_model_free(m);
    }
    qt_gguf_close(src);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    TEST_END();
}
