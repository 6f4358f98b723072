// server.h: an OpenAI-compatible HTTP server on libmicrohttpd: /health,
// GET /v1/models and /v1/models/{id}, POST /v1/completions,
// /v1/chat/completions (stream true: server-sent events; false: one JSON
// body), /v1/embeddings; CORS preflight for the configured origins. Requests
// are validated (server/api.c), queued, and run by one scheduler thread that
// owns the model context: each of its KV cache slots (qt_ctx_init_slots,
// `--parallel`) generates one choice at a time, and the slots decode together
// in one batched forward (continuous batching), each keeping its tokens as a
// prompt cache for the next request.
#ifndef QT_SERVER_H
#define QT_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "model/context.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/chat-template.h"

typedef struct {
    const char *host;          // address to bind (default "127.0.0.1")
    int port;                  // 0: any free port (printed)
    const char *api_key;       // NULL: no authentication; else "Authorization: Bearer KEY" on /v1/*
    int max_tokens_limit;      // largest max_tokens a request may ask for (default 2048)
    size_t max_body;           // largest request body in bytes (default 1 MiB)
    int max_queue;             // requests waiting beyond this get 503 (default 64)
    int max_connections;       // simultaneous connections (default 1024)
    int max_connections_per_ip;  // simultaneous connections from one address (default 256)
    int request_timeout;       // seconds for a request's headers and body to arrive (default 10)
    int idle_timeout;          // seconds a kept-alive connection may wait for its next request (default 30)
    const char *cors_origins;  // NULL: no CORS headers; "*", or origins separated by commas
    qt_sampler_params sampling;  // defaults; a request's temperature, top_p, seed override them
    const char *model_name;    // id in /v1/models and responses
    bool verbose_prompt;       // log each rendered prompt
    int prefill_chunk;         // prompt tokens per forward while other slots decode (default 64)
} qt_server_opts;

qt_server_opts qt_server_defaults(void);

// Serve until SIGINT or SIGTERM with ctx->n_slots requests generating at once
// (ctx->n_batch >= n_slots). tmpl may be NULL (chat completions then
// answer 400 with the reason). Prints "listening on http://HOST:PORT" to
// stderr once ready. QT_OK after a clean stop, QT_ERR if it could not start.
int qt_server_run(const qt_model *m, qt_ctx *ctx, const qt_chat_template *tmpl, const qt_server_opts *o);

#endif
