// common.c: see common.h. Also the Ctrl-C flag: the one global of tools/,
// written only by the signal handler (an atomic_int: async-signal-safe).
#include "common.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

// --lora-scaled PATH SCALE: a finite number.
static int parse_scale(const char *s, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > -1e6 && v < 1e6)) {
        qt_log_error("--lora-scaled: invalid scale '%s' (expected a number)", s);
        return QT_ERR;
    }
    *out = (float)v;
    return QT_OK;
}

qt_lora *qt_cli_load_adapter_at(const qt_model *m, const qt_opt_strs *specs, int i, float *scale) {
    if (!specs->arg2[i]) return qt_cli_load_adapter(m, specs->v[i], scale);
    if (parse_scale(specs->arg2[i], scale) != QT_OK) return NULL;
    return qt_lora_load(m, specs->v[i]);
}

int qt_cli_attach_adapters(qt_cli_adapters *a, const qt_model *m, qt_ctx *ctx, const qt_opt_strs *specs) {
    for (int i = 0; i < specs->n; i++) {
        QT_ASSERT(a->n < 8);
        a->l[a->n] = qt_cli_load_adapter_at(m, specs, i, &a->scale[a->n]);
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

void qt_cli_note_gpu_layers(const char *value) {
    if (value) qt_log_info("-ngl %s: qtune runs on the CPU; the option is ignored", value);
}

char *qt_cli_read_text(const char *path) {
    if (strcmp(path, "-") != 0) return qt_read_file(path, NULL);
    size_t cap = 4096, n = 0;
    char *buf = qt_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = qt_realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        qt_log_error("standard input: read error");
        qt_free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

// ---- Ctrl-C ----

static atomic_int g_interrupts;
static bool g_exit_on_second;
static struct sigaction g_old_int, g_old_usr1;
static bool g_installed;

static void on_interrupt(int sig) {
    (void)sig;
    int n = atomic_fetch_add(&g_interrupts, 1) + 1;
    if (n >= 2 && g_exit_on_second) {
        static const char msg[] = "\ninterrupted again: exiting now\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(QT_EXIT_INTERRUPTED);
    }
}

const atomic_int *qt_cli_interrupt_install(bool exit_on_second) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   // no SA_RESTART: a blocking read returns EINTR
    g_exit_on_second = exit_on_second;
    atomic_store(&g_interrupts, 0);
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGUSR1, &sa, &g_old_usr1);
    g_installed = true;
    return &g_interrupts;
}

void qt_cli_interrupt_restore(void) {
    if (!g_installed) return;
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGUSR1, &g_old_usr1, NULL);
    g_installed = false;
}

int qt_cli_interrupt_count(void) { return atomic_load(&g_interrupts); }
void qt_cli_interrupt_clear(void) { atomic_store(&g_interrupts, 0); }
