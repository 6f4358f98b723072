// cmd-generate.c: `qtune generate`: tokenize a prompt, run it through the
// model in batches, then sample and stream tokens until -n or end of text.
// Speed stats go to stderr so stdout holds only the text. Takes llama.cpp's
// and mlx_lm.generate's option names too: -n -1 (until end of text or a full
// context), escapes in -p processed (\n, \t; --no-escape keeps them), -f -
// (stdin), --lora, and -i / -ins / -cnv / -sys hand the command to `qtune
// chat`. Ctrl-C stops the text and prints the stats (exit 130).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "common.h"
#include "model/context.h"
#include "sample/sampler.h"

// Processes C escapes in place (llama.cpp's -e, mlx_lm.generate's \n, \t):
// \n \t \r \\ \' \" \xNN; anything else stays as written.
static void unescape(char *s) {
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p != '\\' || !p[1]) { *o++ = *p; continue; }
        char c = *++p;
        if (c == 'n') *o++ = '\n';
        else if (c == 't') *o++ = '\t';
        else if (c == 'r') *o++ = '\r';
        else if (c == '\\' || c == '\'' || c == '"') *o++ = c;
        else if (c == 'x' && p[1] && p[2] && strchr("0123456789abcdefABCDEF", p[1]) && strchr("0123456789abcdefABCDEF", p[2])) {
            char hex[3] = { p[1], p[2], 0 };
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            *o++ = '\\';
            *o++ = c;
        }
    }
    *o = 0;
}

// llama.cpp's interactive / conversation flags: the conversation is `qtune chat`.
static bool wants_chat(int argc, char **argv) {
    static const char *const flags[] = { "-i", "--interactive", "-if", "--interactive-first", "-ins", "--instruct",
                                         "-cnv", "--conversation", "-sys", "--system-prompt", "--system", "--chat" };
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
            if (!strcmp(argv[i], flags[k])) return true;
    }
    return false;
}

int qt_cmd_generate(int argc, char **argv) {
    if (wants_chat(argc, argv)) return qt_cmd_chat(argc, argv);
    const char *model = NULL, *prompt = NULL, *prompt_file = NULL, *tok_path = NULL, *gpu_layers = NULL;
    int n_predict = 128, threads = 0, n_ctx = 0, n_batch = 256, verbose = 0;
    bool no_mmap = false;
    const char *device = NULL;
    bool ignore_eos = false, no_bos = false, quiet = false, show_prompt = false, special = false, verbose_prompt = false;
    bool escape = false, no_escape = false, color = false;
    uint64_t seed = UINT64_MAX;   // unset: taken from the clock
    qt_sampler_params sp = qt_sampler_defaults();
    qt_opt_strs adapter_specs = { { 0 }, 0 };
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "model: .gguf file or Hugging Face folder" },
        { "prompt", 'p', QT_OPT_STR, &prompt, "TEXT", "prompt text (escapes like \\n are processed)" },
        { "file", 'f', QT_OPT_STR, &prompt_file, "PATH", "read the prompt from a file; - reads standard input" },
        { "max-tokens", 'n', QT_OPT_INT, &n_predict, "N", "tokens to generate; -1 = until end of text or a full context (default 128)",
          "--n-predict", "[-1,100000000]" },
        QT_CLI_SAMPLING_OPTS(sp, seed),
        QT_CLI_THREADS_OPT(threads),
        QT_CLI_NO_MMAP_OPT(no_mmap),
        QT_CLI_DEVICE_OPT(device),
        { "ctx-size", 'c', QT_OPT_INT, &n_ctx, "N", "context size (default: prompt + max-tokens; the model's with -n -1)", NULL, "[0,10000000]" },
        { "batch-size", 'b', QT_OPT_INT, &n_batch, "N", "prompt tokens per forward pass (default 256)", NULL, "[1,1000000]" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        QT_CLI_ADAPTER_OPTS(adapter_specs),
        { "parse-special", 0, QT_OPT_FLAG, &special, NULL, "read <s>, </s>, [INST]-like special-token texts in the prompt as tokens", "--special" },
        { "escape", 'e', QT_OPT_FLAG, &escape, NULL, "process escapes in the prompt (the default)" },
        { "no-escape", 0, QT_OPT_FLAG, &no_escape, NULL, "keep backslashes in the prompt as written" },
        { "color", 0, QT_OPT_FLAG, &color, NULL, "show the echoed prompt in color on a terminal" },
        QT_CLI_GPU_LAYERS_OPT(gpu_layers),
        { "ignore-eos", 0, QT_OPT_FLAG, &ignore_eos, NULL, "keep generating after end of text" },
        { "no-bos", 0, QT_OPT_FLAG, &no_bos, NULL, "do not add the BOS token" },
        { "no-prompt", 0, QT_OPT_FLAG, &quiet, NULL, "print only the generated text and no stats" },
        { "show-prompt", 0, QT_OPT_FLAG, &show_prompt, NULL, "echo the prompt before the generated text" },
        { "verbose-prompt", 0, QT_OPT_FLAG, &verbose_prompt, NULL, "print the prompt's tokens (id and piece) to stderr" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "generate", "-m MODEL -p PROMPT [options]",
                               "Generate text from a prompt, streaming tokens as they are produced.", opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!prompt && !prompt_file) {
        qt_log_error("qtune generate: give a prompt with -p TEXT or -f FILE");
        return 2;
    }
    if (escape && no_escape) {
        qt_log_error("qtune generate: -e / --escape and --no-escape contradict each other");
        return 2;
    }
    qt_cli_note_gpu_layers(gpu_layers);
    char *file_text = NULL;
    if (prompt_file) {
        file_text = qt_cli_read_text(prompt_file);
        if (!file_text) return 1;
        prompt = file_text;
    } else {
        file_text = qt_strdup(prompt);
        if (!no_escape) unescape(file_text);
        prompt = file_text;
    }
    bool until_end = n_predict < 0;
    if (seed == UINT64_MAX) seed = (uint64_t)time(NULL);
    sp.seed = seed;

    int rc = 1;
    qt_cli_backend cb = { 0 };
    qt_ctx *ctx = NULL;
    qt_sampler *smp = NULL;
    qt_cli_adapters adapters = { 0 };
    int32_t *toks = NULL;
    qt_model *m = qt_cli_load_model(model, tok_path, true);
    if (!m) goto done;
    if (no_mmap && qt_model_copy_weights(m) != QT_OK) goto done;
    const qt_tokenizer *tk = m->tok;
    bool add_bos = !no_bos && qt_tokenizer_add_bos(tk);
    size_t plen = strlen(prompt);
    int n_tok = qt_tokenize(tk, prompt, plen, add_bos, special, NULL, 0);
    if (n_tok < 0) goto done;
    toks = qt_malloc(sizeof(int32_t) * (size_t)(n_tok + 1));
    qt_tokenize(tk, prompt, plen, add_bos, special, toks, n_tok + 1);
    if (n_tok == 0) {
        qt_log_error("qtune generate: the prompt is empty (and no BOS token is added)");
        goto done;
    }
    if (until_end) {   // -n -1: as far as the context goes
        if (n_ctx == 0) n_ctx = m->cfg.n_ctx_train;
        n_predict = n_ctx - n_tok;
        if (n_predict <= 0) {
            qt_log_error("qtune generate: the prompt (%d tokens) fills the context of %d (raise --ctx-size)", n_tok, n_ctx);
            goto done;
        }
    }
    if (n_ctx == 0) n_ctx = n_tok + n_predict;
    if (n_ctx > m->cfg.n_ctx_train)
        qt_log_warn("context %d exceeds the model's training context %d: quality may drop", n_ctx, m->cfg.n_ctx_train);
    if (n_tok + n_predict > n_ctx) {
        qt_log_error("qtune generate: prompt (%d tokens) + n-predict (%d) exceed the context size %d (raise --ctx-size)",
                     n_tok, n_predict, n_ctx);
        goto done;
    }
    int nth = qt_cli_threads(threads);
    if (qt_cli_backend_init(&cb, m, device, nth) != QT_OK) goto done;
    ctx = qt_ctx_init(m, cb.be, n_ctx, n_batch, false);
    if (!ctx) goto done;
    if (qt_cli_attach_adapters(&adapters, m, ctx, &adapter_specs) != QT_OK) goto done;
    smp = qt_sampler_init(&sp, m->cfg.n_vocab);
    for (int i = 0; i < n_tok; i++) qt_sampler_accept(smp, toks[i]);
    if (!quiet) qt_log_info("seed %llu, %d threads, %d prompt tokens", (unsigned long long)seed, nth, n_tok);
    if (verbose_prompt) {   // as llama.cpp's --verbose-prompt: one line per token
        fprintf(stderr, "prompt: %d tokens\n", n_tok);
        for (int i = 0; i < n_tok; i++) {
            const char *t = qt_token_text(tk, toks[i]);
            fprintf(stderr, "%6d -> '%s'\n", toks[i], t ? t : "");
        }
    }

    char buf[256];
    qt_detok dt;
    qt_detok_init(&dt);
    if (show_prompt) {
        bool colored = color && isatty(1);
        if (colored) fputs("\033[33m", stdout);
        fwrite(prompt, 1, plen, stdout);
        if (colored) fputs("\033[0m", stdout);
        // the generated text continues the prompt: no leading-space drop
        dt.at_start = false;
    } else {
        // keep the detokenizer in step with the prompt so spacing is right
        for (int i = 0; i < n_tok; i++) qt_detok_push(&dt, tk, toks[i], buf, sizeof(buf));
    }
    const atomic_int *stop = qt_cli_interrupt_install(true);
    double t0 = qt_time_s();
    const float *logits = qt_ctx_eval(ctx, toks, n_tok);
    if (!logits) goto done;
    double t1 = qt_time_s();
    float *lg = qt_malloc(sizeof(float) * (size_t)m->cfg.n_vocab);
    int n_gen = 0, n_eval = 0;   // tokens produced; forward passes after the prompt
    for (; n_gen < n_predict && !atomic_load(stop); n_gen++) {
        memcpy(lg, logits, sizeof(float) * (size_t)m->cfg.n_vocab);
        int32_t next = qt_sampler_sample(smp, lg);
        qt_sampler_accept(smp, next);
        if (!ignore_eos && qt_tokenizer_is_eog(tk, next)) break;
        size_t n = qt_detok_push(&dt, tk, next, buf, sizeof(buf));
        fwrite(buf, 1, n, stdout);
        fflush(stdout);
        if (n_gen + 1 < n_predict) {
            logits = qt_ctx_eval(ctx, &next, 1);
            if (!logits) { qt_free(lg); goto done; }
            n_eval++;
        }
    }
    size_t n = qt_detok_flush(&dt, buf, sizeof(buf));
    fwrite(buf, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    double t2 = qt_time_s();
    qt_free(lg);
    if (!quiet) {
        fprintf(stderr, "\nprompt:     %5d tokens in %8.3f s = %8.2f tokens/s\n", n_tok, t1 - t0, n_tok / (t1 - t0));
        fprintf(stderr, "generation: %5d tokens in %8.3f s = %8.2f tokens/s\n", n_gen, t2 - t1,
                n_eval > 0 ? n_eval / (t2 - t1) : 0.0);
        fprintf(stderr, "peak memory: %.1f MiB\n", qt_peak_rss() / 1048576.0);
    }
    rc = atomic_load(stop) ? QT_EXIT_INTERRUPTED : 0;
done:
    qt_cli_interrupt_restore();
    qt_sampler_free(smp);
    qt_ctx_free(ctx);
    qt_cli_adapters_free(&adapters);
    qt_cli_backend_free(&cb);
    qt_model_free(m);
    qt_free(toks);
    qt_free(file_text);
    return rc;
}
