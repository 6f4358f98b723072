// cmd-generate.c: `qtune generate`: tokenize a prompt, run it through the
// model in batches, then sample and stream tokens until -n or end of text.
// Speed stats go to stderr so stdout holds only the text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "common.h"
#include "model/context.h"
#include "sample/sampler.h"

int qt_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *prompt_file = NULL, *tok_path = NULL;
    int n_predict = 128, threads = 0, n_ctx = 0, n_batch = 256, verbose = 0;
    const char *device = NULL;
    bool ignore_eos = false, no_bos = false, quiet = false, show_prompt = false, verbose_prompt = false;
    uint64_t seed = UINT64_MAX;   // unset: taken from the clock
    qt_sampler_params sp = qt_sampler_defaults();
    qt_opt_strs adapter_specs = { { 0 }, 0 };
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "model: .gguf file or Hugging Face folder" },
        { "prompt", 'p', QT_OPT_STR, &prompt, "TEXT", "prompt text" },
        { "file", 'f', QT_OPT_STR, &prompt_file, "PATH", "read the prompt from a file" },
        { "n-predict", 'n', QT_OPT_INT, &n_predict, "N", "tokens to generate (default 128)" },
        QT_CLI_SAMPLING_OPTS(sp, seed),
        { "threads", 't', QT_OPT_INT, &threads, "N", "threads (default: all cores)" },
        QT_CLI_DEVICE_OPT(device),
        { "ctx-size", 'c', QT_OPT_INT, &n_ctx, "N", "context size (default: prompt + n-predict)" },
        { "batch-size", 'b', QT_OPT_INT, &n_batch, "N", "prompt tokens per forward pass (default 256)" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        { "adapter", 'a', QT_OPT_STRS, &adapter_specs, "PATH[:SCALE]", "apply a LoRA adapter (PEFT or mlx-lm folder, GGUF LoRA), optionally scaled; repeatable" },
        { "ignore-eos", 0, QT_OPT_FLAG, &ignore_eos, NULL, "keep generating after end of text" },
        { "no-bos", 0, QT_OPT_FLAG, &no_bos, NULL, "do not add the BOS token" },
        { "no-prompt", 0, QT_OPT_FLAG, &quiet, NULL, "print only the generated text and no stats" },
        { "show-prompt", 0, QT_OPT_FLAG, &show_prompt, NULL, "echo the prompt before the generated text" },
        { "verbose-prompt", 0, QT_OPT_FLAG, &verbose_prompt, NULL, "print the prompt's tokens (id and piece) to stderr" },
        { "verbose", 'v', QT_OPT_INT, &verbose, "N", "log level 0..2 (default 1)" },
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
    if (n_predict < 0 || n_batch <= 0 || n_ctx < 0 || sp.top_k < 0 || sp.top_p <= 0 || sp.repeat_last_n < 0) {
        qt_log_error("qtune generate: -n, --batch-size, --ctx-size, --top-k, --repeat-last-n must not be negative, --top-p > 0");
        return 2;
    }
    char *file_text = NULL;
    if (prompt_file) {
        file_text = qt_read_file(prompt_file, NULL);
        if (!file_text) return 1;
        prompt = file_text;
    }
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
    const qt_tokenizer *tk = m->tok;
    bool add_bos = !no_bos && qt_tokenizer_add_bos(tk);
    size_t plen = strlen(prompt);
    int n_tok = qt_tokenize(tk, prompt, plen, add_bos, false, NULL, 0);
    if (n_tok < 0) goto done;
    toks = qt_malloc(sizeof(int32_t) * (size_t)(n_tok + 1));
    qt_tokenize(tk, prompt, plen, add_bos, false, toks, n_tok + 1);
    if (n_tok == 0) {
        qt_log_error("qtune generate: the prompt is empty (and no BOS token is added)");
        goto done;
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
        fwrite(prompt, 1, plen, stdout);
        // the generated text continues the prompt: no leading-space drop
        dt.at_start = false;
    } else {
        // keep the detokenizer in step with the prompt so spacing is right
        for (int i = 0; i < n_tok; i++) qt_detok_push(&dt, tk, toks[i], buf, sizeof(buf));
    }
    double t0 = qt_time_s();
    const float *logits = qt_ctx_eval(ctx, toks, n_tok);
    if (!logits) goto done;
    double t1 = qt_time_s();
    float *lg = qt_malloc(sizeof(float) * (size_t)m->cfg.n_vocab);
    int n_gen = 0, n_eval = 0;   // tokens produced; forward passes after the prompt
    for (; n_gen < n_predict; n_gen++) {
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
    rc = 0;
done:
    qt_sampler_free(smp);
    qt_ctx_free(ctx);
    qt_cli_adapters_free(&adapters);
    qt_cli_backend_free(&cb);
    qt_model_free(m);
    qt_free(toks);
    qt_free(file_text);
    return rc;
}
