// cmd-chat.c: `qtune chat`: a multi-turn conversation in the terminal or
// through a pipe. Each turn renders the whole conversation with the model's
// chat template and hands it to a session that keeps the common token prefix
// in the KV cache, so only the new turn is evaluated. When the conversation
// no longer fits the context, the oldest turns are dropped (the system
// prompt stays). Commands: /clear, /exit, /save FILE, /load FILE.
// Ctrl-C stops the answer being written and returns to the prompt; Ctrl-D, or
// Ctrl-C twice at an empty prompt, ends the chat. llama.cpp's conversation
// flags (-i, -ins, -cnv, -sys, -p as the system prompt, -n -1, --color) are
// accepted, so `qtune generate ... -ins` lands here.
// Deliberately not here: line editing, history files, tool calls.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "common.h"
#include "model/context.h"
#include "sample/sampler.h"
#include "server/gen.h"

typedef struct {
    char *role, *content;
} msg;

typedef struct {
    msg *m;
    int n, cap;
} convo;

static void convo_add(convo *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->m = qt_realloc(c->m, (size_t)c->cap * sizeof(msg));
    }
    c->m[c->n].role = qt_strdup(role);
    c->m[c->n].content = qt_malloc(len + 1);
    memcpy(c->m[c->n].content, content, len);
    c->m[c->n].content[len] = 0;
    c->n++;
}

static void convo_remove(convo *c, int i, int count) {
    for (int k = i; k < i + count; k++) {
        qt_free(c->m[k].role);
        qt_free(c->m[k].content);
    }
    memmove(c->m + i, c->m + i + count, (size_t)(c->n - i - count) * sizeof(msg));
    c->n -= count;
}

static void convo_clear(convo *c) { convo_remove(c, 0, c->n); }

// Messages as qt_chat_msg views (valid while c is unchanged).
static qt_chat_msg *convo_view(const convo *c) {
    qt_chat_msg *v = qt_malloc(sizeof(qt_chat_msg) * (size_t)(c->n ? c->n : 1));
    for (int i = 0; i < c->n; i++) v[i] = (qt_chat_msg){ c->m[i].role, c->m[i].content };
    return v;
}

static int convo_save(const convo *c, const char *path) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "messages");
    for (int i = 0; i < c->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", c->m[i].role);
        cJSON_AddStringToObject(o, "content", c->m[i].content);
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    size_t n = strlen(s);
    s = realloc(s, n + 2);
    s[n] = '\n';
    int rc = qt_write_file_atomic(path, s, n + 1);
    free(s);
    return rc;
}

// {"messages": [...]} or a bare array of {"role", "content"}.
static int convo_load(convo *c, const char *path) {
    char *text = qt_read_file(path, NULL);
    if (!text) return QT_ERR;
    cJSON *root = cJSON_Parse(text);
    qt_free(text);
    const cJSON *arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(arr)) {
        qt_log_error("%s: expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}", path);
        cJSON_Delete(root);
        return QT_ERR;
    }
    convo tmp = {0};
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(t)) {
            qt_log_error("%s: messages[%d]: needs string \"role\" and \"content\"", path, i);
            convo_clear(&tmp);
            qt_free(tmp.m);
            cJSON_Delete(root);
            return QT_ERR;
        }
        convo_add(&tmp, r->valuestring, t->valuestring, strlen(t->valuestring));
        i++;
    }
    cJSON_Delete(root);
    convo_clear(c);
    qt_free(c->m);
    *c = tmp;
    return QT_OK;
}

// Streams the answer; false (stop) once Ctrl-C was pressed.
static bool print_text(const char *text, size_t len, void *ud) {
    (void)ud;
    if (qt_cli_interrupt_count() > 0) return false;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

// Reads one line (without the newline) into *buf: LINE_EOF at end of input,
// LINE_INTERRUPTED when Ctrl-C came while waiting.
static int read_line(char **buf, size_t *cap) {
    errno = 0;
    ssize_t n = getline(buf, cap, stdin);
    if (n < 0) {
        bool intr = errno == EINTR || qt_cli_interrupt_count() > 0;
        clearerr(stdin);
        return intr ? LINE_INTERRUPTED : LINE_EOF;
    }
    while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
    return LINE_OK;
}

int qt_cmd_chat(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *system = NULL, *tmpl_name = NULL, *prompt = NULL, *prompt_file = NULL;
    const char *tmpl_file = NULL, *device = NULL;
    bool verbose_prompt = false;
    const char *gpu_layers = NULL;
    int n_predict = 256, threads = 0, n_ctx = 0, n_batch = 256, verbose = 1;
    bool no_mmap = false;
    bool quiet = false, conversation = false, instruct = false, color = false, ignored = false;
    uint64_t seed = UINT64_MAX;
    qt_sampler_params sp = qt_sampler_defaults();
    qt_opt_strs adapter_specs = { { 0 }, 0 };
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "model: .gguf file or Hugging Face folder" },
        QT_CLI_ADAPTER_OPTS(adapter_specs),
        { "system", 0, QT_OPT_STR, &system, "TEXT", "system prompt (kept when old turns are dropped)", "-sys --system-prompt" },
        { "prompt", 'p', QT_OPT_STR, &prompt, "TEXT", "as in llama.cpp's conversation mode: the system prompt" },
        { "file", 'f', QT_OPT_STR, &prompt_file, "PATH", "the system prompt from a file (- : standard input)" },
        { "chat-template", 0, QT_OPT_STR, &tmpl_name, "NAME",
          "llama2, mistral, chatml, qwen2, smollm2, llama3, zephyr, phi3, gemma, alpaca (default: the model's)" },
        { "chat-template-file", 0, QT_OPT_STR, &tmpl_file, "FILE", "Jinja chat template (or a tokenizer_config.json) to use" },
        { "verbose-prompt", 0, QT_OPT_FLAG, &verbose_prompt, NULL, "print each rendered prompt to stderr" },
        { "max-tokens", 'n', QT_OPT_INT, &n_predict, "N", "most tokens per answer; -1 = until the end of the turn (default 256)",
          "--n-predict", "[-1,100000000]" },
        QT_CLI_SAMPLING_OPTS(sp, seed),
        QT_CLI_THREADS_OPT(threads),
        QT_CLI_NO_MMAP_OPT(no_mmap),
        QT_CLI_DEVICE_OPT(device),
        { "ctx-size", 'c', QT_OPT_INT, &n_ctx, "N", "context size (default: the model's, at most 4096)", NULL, "[0,10000000]" },
        { "batch-size", 'b', QT_OPT_INT, &n_batch, "N", "prompt tokens per forward pass (default 256)", NULL, "[1,1000000]" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        { "color", 0, QT_OPT_FLAG, &color, NULL, "show your turns in color on a terminal" },
        { "conversation", 0, QT_OPT_FLAG, &conversation, NULL, "llama.cpp's interactive / conversation flags: this is chat; "
          "a model without a template gets chatml, as llama-cli's", "-i --interactive -if --interactive-first -cnv --chat" },
        { "instruct", 0, QT_OPT_FLAG, &instruct, NULL, "llama.cpp's -ins: a model without a template gets alpaca's "
          "### Instruction / ### Response", "-ins" },
        QT_CLI_GPU_LAYERS_OPT(gpu_layers),
        { "escape", 'e', QT_OPT_FLAG, &ignored, NULL, "accepted for generate command lines (no effect in chat)",
          "--no-escape --parse-special --special --ignore-eos --no-bos --no-prompt --show-prompt" },
        { "quiet", 'q', QT_OPT_FLAG, &quiet, NULL, "no per-turn token usage on stderr" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "chat", "-m MODEL [options]",
                               "Chat with a model; lines from stdin are user turns; /clear, /exit, /save FILE, /load FILE, /prompt.",
                               opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (n_predict == 0) {
        qt_log_error("qtune chat: --max-tokens must be > 0, or -1 for answers up to the end of the turn");
        return 2;
    }
    if ((prompt || prompt_file) && system) {
        qt_log_error("qtune chat: -p / -f give the system prompt, as does --system: give one of them");
        return 2;
    }
    qt_cli_note_gpu_layers(gpu_layers);
    char *system_text = NULL;
    if (prompt_file) {
        system_text = qt_cli_read_text(prompt_file);
        if (!system_text) return 1;
        system = system_text;
    } else if (prompt) {
        system = prompt;
    }
    bool until_end = n_predict < 0;
    if (seed == UINT64_MAX) seed = (uint64_t)time(NULL);
    sp.seed = seed;

    int rc = 1;
    qt_cli_backend cb = { 0 };
    qt_ctx *ctx = NULL;
    qt_sampler *smp = NULL;
    qt_cli_adapters adapters = { 0 };
    qt_session sess = {0};
    qt_chat_template tmpl = {0};
    convo cv = {0};
    char *line = NULL;
    size_t line_cap = 0;
    qt_model *m = qt_cli_load_model(model, tok_path, true);
    if (!m) goto done;
    if (no_mmap && qt_model_copy_weights(m) != QT_OK) goto done;
    if (!tmpl_name && !tmpl_file && (conversation || instruct)) {
        // llama.cpp's conversation modes on a model without a template: its fallbacks
        char *own = qt_model_chat_template(m);
        if (!own) {
            tmpl_name = instruct ? "alpaca" : "chatml";
            qt_log_info("the model has no chat template: using %s (choose another with --chat-template)", tmpl_name);
        }
        qt_free(own);
    }
    if (qt_model_template_init(&tmpl, m, tmpl_name, tmpl_file) != QT_OK) goto done;
    if (system) {
        // templates without a system role refuse it now, not at the first turn
        qt_chat_msg probe[2] = { { "system", system }, { "user", "x" } };
        char err[512];
        int32_t *pt = NULL;
        if (qt_chat_tokenize(m, &tmpl, probe, 2, true, &pt, NULL, err, sizeof(err)) < 0) {
            qt_log_error("qtune chat: --system: %s", err);
            goto done;
        }
        qt_free(pt);
        convo_add(&cv, "system", system, strlen(system));
    }
    if (n_ctx == 0) n_ctx = QT_MIN(m->cfg.n_ctx_train, 4096);
    if (until_end) n_predict = n_ctx / 2;   // answers up to half the context; older turns make room
    if (n_ctx > m->cfg.n_ctx_train)
        qt_log_warn("context %d exceeds the model's training context %d: quality may drop", n_ctx, m->cfg.n_ctx_train);
    if (n_predict >= n_ctx) {
        qt_log_error("qtune chat: -n %d leaves no room for the conversation in a context of %d (raise --ctx-size)", n_predict, n_ctx);
        goto done;
    }
    int nth = qt_cli_threads(threads);
    if (qt_cli_backend_init(&cb, m, device, nth) != QT_OK) goto done;
    ctx = qt_ctx_init(m, cb.be, n_ctx, n_batch, false);
    if (!ctx) goto done;
    if (qt_cli_attach_adapters(&adapters, m, ctx, &adapter_specs) != QT_OK) goto done;
    smp = qt_sampler_init(&sp, m->cfg.n_vocab);
    qt_session_init(&sess, ctx);
    const char *const *stops = qt_chat_template_stops(&tmpl);
    int n_stops = 0;
    while (stops[n_stops]) n_stops++;
    bool tty = isatty(0), colored = color && isatty(1);
    char tdesc[256];
    if (!quiet)
        qt_log_info("chat template %s, context %d, seed %llu, %d threads; /exit or Ctrl-D to quit, Ctrl-C stops an answer",
                    qt_chat_template_describe(&tmpl, tdesc, sizeof(tdesc)), n_ctx, (unsigned long long)seed, nth);
    qt_cli_interrupt_install(false);
    int turn = 0;
    bool asked_exit = false;   // one Ctrl-C at the prompt: a second one exits
    for (;;) {
        if (tty) { fputs(colored ? "\033[32m> " : "> ", stdout); fflush(stdout); }
        int lr = read_line(&line, &line_cap);
        if (colored) { fputs("\033[0m", stdout); fflush(stdout); }
        if (lr == LINE_EOF) break;
        if (lr == LINE_INTERRUPTED) {
            if (asked_exit || qt_cli_interrupt_count() > 1) { rc = QT_EXIT_INTERRUPTED; goto done; }
            fprintf(stderr, "\n[Ctrl-C again or Ctrl-D to quit]\n");
            asked_exit = true;
            qt_cli_interrupt_clear();
            continue;
        }
        asked_exit = false;
        qt_cli_interrupt_clear();
        if (line[0] == 0) continue;
        if (line[0] == '/') {
            char *arg = strchr(line, ' ');
            if (arg) { *arg++ = 0; while (*arg == ' ') arg++; }
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
            if (!strcmp(line, "/clear")) {
                int keep = cv.n && !strcmp(cv.m[0].role, "system") ? 1 : 0;
                convo_remove(&cv, keep, cv.n - keep);
                qt_session_reset(&sess);
                fprintf(stderr, "[conversation cleared]\n");
            } else if (!strcmp(line, "/save") && arg && *arg) {
                if (convo_save(&cv, arg) == QT_OK) fprintf(stderr, "[saved %d messages to %s]\n", cv.n, arg);
            } else if (!strcmp(line, "/load") && arg && *arg) {
                if (convo_load(&cv, arg) == QT_OK) fprintf(stderr, "[loaded %d messages from %s]\n", cv.n, arg);
            } else if (!strcmp(line, "/prompt")) {   // the prompt the next turn would start from
                qt_chat_msg *v = convo_view(&cv);
                char err[512], *text = NULL;
                int32_t *pt = NULL;
                int np = qt_chat_tokenize(m, &tmpl, v, cv.n, true, &pt, &text, err, sizeof(err));
                qt_free(v);
                if (np < 0) fprintf(stderr, "[%s]\n", err);
                else fprintf(stderr, "[%d tokens]\n%s\n[end of prompt]\n", np, text);
                qt_free(pt);
                qt_free(text);
            } else {
                fprintf(stderr, "commands: /clear, /exit, /save FILE, /load FILE, /prompt\n");
            }
            continue;
        }
        convo_add(&cv, "user", line, strlen(line));
        turn++;
        // render; drop the oldest turns (after the system prompt) until prompt + answer fit
        int32_t *toks = NULL;
        int n_tok = 0, dropped = 0;
        for (;;) {
            qt_chat_msg *v = convo_view(&cv);
            char err[512], *text = NULL;
            n_tok = qt_chat_tokenize(m, &tmpl, v, cv.n, true, &toks, verbose_prompt ? &text : NULL, err, sizeof(err));
            qt_free(v);
            if (text && n_tok >= 0 && n_tok + n_predict <= n_ctx) fprintf(stderr, "[prompt: %d tokens]\n%s\n[end of prompt]\n", n_tok, text);
            qt_free(text);
            if (n_tok < 0) {
                qt_log_error("%s", err);
                break;
            }
            if (n_tok + n_predict <= n_ctx) break;
            int first = cv.n && !strcmp(cv.m[0].role, "system") ? 1 : 0;
            // the oldest turn: a user message and the answers that follow it, never the new message
            int end = first + 1;
            while (end < cv.n - 1 && strcmp(cv.m[end].role, "user")) end++;
            if (end >= cv.n) { n_tok = -2; qt_free(toks); toks = NULL; break; }
            convo_remove(&cv, first, end - first);
            dropped += end - first;
            qt_free(toks);
            toks = NULL;
        }
        if (n_tok < 0) {
            if (n_tok == -2)
                qt_log_error("this message alone (with the system prompt and -n %d) does not fit the context of %d", n_predict, n_ctx);
            convo_remove(&cv, cv.n - 1, 1);   // the turn did not happen
            turn--;
            qt_free(toks);
            continue;
        }
        if (dropped) fprintf(stderr, "[context full: dropped the %d oldest messages]\n", dropped);
        qt_gen_params gp = { .max_tokens = n_predict, .stops = stops, .n_stops = n_stops };
        qt_gen_result res;
        int grc = qt_generate(&sess, m->tok, smp, toks, n_tok, &gp, print_text, NULL, &res);
        qt_free(toks);
        fputc('\n', stdout);
        fflush(stdout);
        if (qt_cli_interrupt_count() > 0) {   // the answer so far stays in the conversation
            fprintf(stderr, "[answer stopped]\n");
            qt_cli_interrupt_clear();
        }
        if (grc != QT_OK) {
            convo_remove(&cv, cv.n - 1, 1);
            turn--;
            continue;
        }
        convo_add(&cv, "assistant", res.text, res.len);
        if (!quiet)
            fprintf(stderr, "[turn %d: prompt %d tokens (%d from the cache, %d evaluated), answer %d tokens (%s), "
                    "cache %d/%d, %.1f tokens/s]\n", turn, res.n_prompt, res.n_reused, res.n_prompt - res.n_reused,
                    res.n_gen, res.finish, qt_ctx_n_past(ctx, 0), n_ctx, res.t_gen > 0 ? res.n_gen / res.t_gen : 0.0);
        qt_gen_result_free(&res);
    }
    rc = 0;
done:
    qt_cli_interrupt_restore();
    qt_free(system_text);
    convo_clear(&cv);
    qt_free(cv.m);
    free(line);
    qt_session_free(&sess);
    qt_chat_template_free(&tmpl);
    qt_sampler_free(smp);
    qt_ctx_free(ctx);
    qt_cli_adapters_free(&adapters);
    qt_cli_backend_free(&cb);
    qt_model_free(m);
    return rc;
}
