// common.c: see common.h.
#include "common.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/lora-io.h"

qt_model *qt_cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer) {
    if (!path) {
        qt_log_error("no model given (-m MODEL: a .gguf file or a Hugging Face folder)");
        return NULL;
    }
    qt_model *m = qt_model_load(path);
    if (!m) return NULL;
    if (tokenizer_path) {
        qt_gguf *g = qt_gguf_open(tokenizer_path);
        qt_tokenizer *t = g ? qt_tokenizer_from_gguf(g) : NULL;
        qt_gguf_close(g);
        if (!t) {
            qt_model_free(m);
            return NULL;
        }
        if (qt_tokenizer_n_vocab(t) > m->cfg.n_vocab) {
            qt_log_error("%s: vocabulary of %d tokens does not fit the model's %d", tokenizer_path,
                         qt_tokenizer_n_vocab(t), m->cfg.n_vocab);
            qt_tokenizer_free(t);
            qt_model_free(m);
            return NULL;
        }
        qt_tokenizer_free(m->tok);
        m->tok = t;
    }
    if (need_tokenizer && !m->tok) {
        qt_log_error("%s: no tokenizer we can read (hint: pass --tokenizer FILE.gguf with the model's vocabulary)", path);
        qt_model_free(m);
        return NULL;
    }
    return m;
}

int qt_cli_threads(int requested) { return requested > 0 ? requested : qt_n_cpus(); }

int qt_cli_backend_init(qt_cli_backend *b, qt_model *m, const char *device, int threads) {
    b->pool = qt_pool_init(qt_cli_threads(threads));
    b->be = qt_backend_init(device ? device : "auto", b->pool);
    b->m = m;
    if (!b->be || qt_model_bind(m, b->be) != QT_OK) {
        qt_cli_backend_free(b);
        return QT_ERR;
    }
    return QT_OK;
}

void qt_cli_backend_free(qt_cli_backend *b) {
    if (b->m) qt_model_bind(b->m, NULL);
    qt_backend_free(b->be);
    qt_pool_free(b->pool);
    b->be = NULL;
    b->pool = NULL;
    b->m = NULL;
}

qt_lora *qt_cli_load_adapter(const qt_model *m, const char *spec, float *scale) {
    char *path = qt_strdup(spec);
    *scale = 1.0f;
    char *colon = strrchr(path, ':');
    if (colon && colon[1]) {
        char *end;
        float s = strtof(colon + 1, &end);
        if (*end == 0) {   // "PATH:0.5"; otherwise the colon is part of the path
            *colon = 0;
            *scale = s;
        }
    }
    qt_lora *l = qt_lora_load(m, path);
    qt_free(path);
    return l;
}

int qt_cli_attach_adapters(qt_cli_adapters *a, const qt_model *m, qt_ctx *ctx, const qt_opt_strs *specs) {
    for (int i = 0; i < specs->n; i++) {
        QT_ASSERT(a->n < 8);
        a->l[a->n] = qt_cli_load_adapter(m, specs->v[i], &a->scale[a->n]);
        if (!a->l[a->n]) return QT_ERR;
        if (qt_ctx_add_adapter(ctx, a->l[a->n], a->scale[a->n]) != QT_OK) {
            qt_lora_free(a->l[a->n]);
            return QT_ERR;
        }
        a->n++;
    }
    return QT_OK;
}

void qt_cli_adapters_free(qt_cli_adapters *a) {
    for (int i = 0; i < a->n; i++) qt_lora_free(a->l[i]);
    a->n = 0;
}
