// cmd-serve.c: `qtune serve`: load a model (and adapter), pick its chat
// template, and run the OpenAI-compatible server of src/server/server.h
// until Ctrl-C. Binds 127.0.0.1 unless --host says otherwise. Deliberately
// not here: TLS (put a reverse proxy in front), IPv6, several models.
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "common.h"
#include "model/context.h"
#include "server/gen.h"
#include "server/server.h"

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

int qt_cmd_serve(int argc, char **argv) {
    const char *model = NULL, *tok_path = NULL, *tmpl_name = NULL, *tmpl_file = NULL, *alias = NULL;
    int threads = 0, n_ctx = 0, n_batch = 256, verbose = 1, max_body_kib = 1024, n_parallel = 1;
    bool no_mmap = false;
    const char *device = NULL;
    qt_server_opts so = qt_server_defaults();
    qt_opt_strs adapter_specs = { { 0 }, 0 };
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "model: .gguf file or Hugging Face folder" },
        QT_CLI_ADAPTER_OPTS(adapter_specs),
        { "host", 0, QT_OPT_STR, &so.host, "ADDR", "IPv4 address to bind (default 127.0.0.1; 0.0.0.0 = every interface)" },
        { "port", 0, QT_OPT_INT, &so.port, "P", "port (default 8080; 0 = any free port, printed)" },
        { "api-key", 0, QT_OPT_STR, &so.api_key, "KEY", "require \"Authorization: Bearer KEY\" on /v1/*" },
        { "max-tokens-limit", 0, QT_OPT_INT, &so.max_tokens_limit, "N", "largest max_tokens a request may ask (default 2048)" },
        { "max-body", 0, QT_OPT_INT, &max_body_kib, "KIB", "largest request body in KiB; larger ones get 413 (default 1024)" },
        { "max-queue", 0, QT_OPT_INT, &so.max_queue, "N", "waiting requests beyond N get 503 (default 64)" },
        { "max-connections", 0, QT_OPT_INT, &so.max_connections, "N", "simultaneous connections (default 1024)" },
        { "max-connections-per-ip", 0, QT_OPT_INT, &so.max_connections_per_ip, "N", "simultaneous connections from one address (default 256)" },
        { "timeout", 0, QT_OPT_INT, &so.request_timeout, "S", "seconds for a request's headers and body to arrive (default 10)" },
        { "idle-timeout", 0, QT_OPT_INT, &so.idle_timeout, "S", "seconds a kept-alive connection may idle (default 30)" },
        { "cors-origins", 0, QT_OPT_STR, &so.cors_origins, "LIST", "allow browser requests from these origins (comma-separated, or *; default none)" },
        { "chat-template", 0, QT_OPT_STR, &tmpl_name, "NAME",
          "llama2, mistral, chatml, qwen2, smollm2, llama3, zephyr, phi3, gemma, alpaca (default: the model's)" },
        { "chat-template-file", 0, QT_OPT_STR, &tmpl_file, "FILE", "Jinja chat template (or a tokenizer_config.json) to use" },
        { "verbose-prompt", 0, QT_OPT_FLAG, &so.verbose_prompt, NULL, "log each rendered chat prompt to stderr" },
        { "alias", 0, QT_OPT_STR, &alias, "NAME", "model id in /v1/models (default: the file or folder name)" },
        { "temp", 0, QT_OPT_FLOAT, &so.sampling.temp, "T", "default temperature (default 0.8)" },
        { "top-k", 0, QT_OPT_INT, &so.sampling.top_k, "K", "default top_k (requests may set top_k); 0 = off (default 40)" },
        { "top-p", 0, QT_OPT_FLOAT, &so.sampling.top_p, "P", "default top_p (default 0.95)" },
        { "min-p", 0, QT_OPT_FLOAT, &so.sampling.min_p, "P", "default min_p (requests may set min_p) (default 0.05)" },
        { "repeat-penalty", 0, QT_OPT_FLOAT, &so.sampling.repeat_penalty, "X", "default repeat_penalty; 1 = off (default 1.0)" },
        { "threads", 't', QT_OPT_INT, &threads, "N", "threads (default: all cores)" },
        QT_CLI_DEVICE_OPT(device),
        QT_CLI_NO_MMAP_OPT(no_mmap),
        { "parallel", 0, QT_OPT_INT, &n_parallel, "N",
          "requests (choices) generated at once, 1..256, decoded together in one batched forward; "
          "each slot has its own --ctx-size of KV cache (default 1)", "-np", "[1,256]" },
        { "prefill-chunk", 0, QT_OPT_INT, &so.prefill_chunk, "N",
          "prompt tokens per forward while other slots decode (default 64, at most --batch-size)", NULL, "[1,inf)" },
        { "ctx-size", 'c', QT_OPT_INT, &n_ctx, "N", "context size of each slot (default: the model's, at most 4096)" },
        { "batch-size", 'b', QT_OPT_INT, &n_batch, "N", "tokens per forward pass, >= --parallel (default 256)" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        { "verbose", 'v', QT_OPT_INT, &verbose, "N", "log level 0..2 (default 1)" },
        { 0 },
    };
    const qt_cmd_spec spec = { "serve", "-m MODEL [options]",
                               "OpenAI-compatible server: /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings, "
                               "/health. Limits: a request body of --max-body KiB, a prompt of --ctx-size tokens minus one, "
                               "--max-tokens-limit generated tokens, 16 choices (n), 20 top_logprobs.",
                               opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (so.port < 0 || so.port > 65535 || so.max_tokens_limit < 1 || max_body_kib < 1 || max_body_kib > (1 << 20) ||
        so.max_queue < 1 || n_ctx < 0 || n_batch < 1 || so.max_connections < 1 || so.max_connections_per_ip < 1 ||
        so.request_timeout < 1 || so.idle_timeout < 1) {
        qt_log_error("qtune serve: --port 0..65535; --max-body 1..1048576; --max-tokens-limit, --max-queue, --batch-size, "
                     "--max-connections, --max-connections-per-ip, --timeout, --idle-timeout >= 1");
        return 2;
    }
    if (n_batch < n_parallel) {   // every decoding slot has its token in each forward
        qt_log_error("qtune serve: --batch-size %d is smaller than --parallel %d", n_batch, n_parallel);
        return 2;
    }
    so.prefill_chunk = QT_MIN(so.prefill_chunk, n_batch);
    so.max_body = (size_t)max_body_kib * 1024;

    int rc = 1;
    qt_cli_backend cb = { 0 };
    qt_ctx *ctx = NULL;
    qt_cli_adapters adapters = { 0 };
    qt_chat_template tmpl = {0};
    bool have_tmpl = false;
    qt_model *m = qt_cli_load_model(model, tok_path, true);
    if (!m) goto done;
    if (no_mmap && qt_model_copy_weights(m) != QT_OK) goto done;
    char *jinja = tmpl_name || tmpl_file ? NULL : qt_model_chat_template(m);
    if (tmpl_name || tmpl_file || jinja) {
        if (qt_model_template_init(&tmpl, m, tmpl_name, tmpl_file) != QT_OK) {
            qt_free(jinja);
            goto done;
        }
        have_tmpl = true;
    } else {
        qt_log_warn("the model has no chat template: /v1/chat/completions answers 400 (choose one with --chat-template NAME "
                    "or --chat-template-file FILE)");
    }
    qt_free(jinja);
    if (n_ctx == 0) n_ctx = QT_MIN(m->cfg.n_ctx_train, 4096);
    int nth = qt_cli_threads(threads);
    if (qt_cli_backend_init(&cb, m, device, nth) != QT_OK) goto done;
    ctx = qt_ctx_init_slots(m, cb.be, n_ctx, n_batch, n_parallel, false);
    if (!ctx) goto done;
    if (qt_cli_attach_adapters(&adapters, m, ctx, &adapter_specs) != QT_OK) goto done;
    so.model_name = alias ? alias : base_name(model);
    char tdesc[256];
    if (have_tmpl) qt_log_info("chat template: %s", qt_chat_template_describe(&tmpl, tdesc, sizeof(tdesc)));
    if (so.api_key && !so.api_key[0]) so.api_key = NULL;
    if (strcmp(so.host, "127.0.0.1") != 0 && !so.api_key)
        qt_log_warn("listening on %s without --api-key: anyone who can reach it can use the model", so.host);
    rc = qt_server_run(m, ctx, have_tmpl ? &tmpl : NULL, &so) == QT_OK ? 0 : 1;
done:
    qt_chat_template_free(&tmpl);
    qt_ctx_free(ctx);
    qt_cli_adapters_free(&adapters);
    qt_cli_backend_free(&cb);
    qt_model_free(m);
    return rc;
}
