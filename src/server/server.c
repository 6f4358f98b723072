// server.c: the OpenAI-compatible HTTP server of server.h. HTTP parsing,
// connections and chunked transfer are libmicrohttpd's (one thread per
// connection); this file validates requests (cJSON), queues them in a FIFO
// served by one worker thread that owns the model context and its reusable KV
// cache (server/gen.h), and writes OpenAI's response objects: chat.completion,
// chat.completion.chunk (server-sent events ending with "data: [DONE]"),
// text_completion, errors as {"error": {"message", "type", "param", "code"}}.
// Follows the OpenAI API reference for field names; llama.cpp's server for
// the single-slot prompt-cache behaviour. Deliberately not here: n > 1,
// logprobs, tools / function calls, batching requests into one forward pass.
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "base/base.h"
#include "server/gen.h"

#define MAX_STOPS 4   // as OpenAI's API

qt_server_opts qt_server_defaults(void) {
    return (qt_server_opts){
        .host = "127.0.0.1",
        .port = 8080,
        .max_tokens_limit = 2048,
        .max_body = 1 << 20,
        .max_queue = 64,
        .max_connections = 64,
        .sampling = qt_sampler_defaults(),
        .model_name = "qtune",
    };
}

typedef struct job job;
struct job {
    bool chat, stream, include_usage;
    int32_t *prompt;
    int n_prompt, max_tokens;
    char *stops[MAX_STOPS + 8];
    int n_stops;
    qt_sampler_params sp;
    char id[48];
    long created;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;           // stream: server-sent event bytes not yet sent; else the response body
    size_t len, cap, rpos;
    int status;
    bool done, cancelled;
    int refs;
    job *next;
};

typedef struct {
    const qt_model *m;
    qt_ctx *ctx;
    qt_session sess;
    const qt_chat_template *tmpl;
    qt_server_opts o;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    job *head, *tail;
    int qlen;
    bool stopping;
    atomic_ulong next_id;
} server;

typedef struct {
    char *body;
    size_t len;
    bool too_big;
} request;

// ---- jobs ----------------------------------------------------------------------

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    for (int i = 0; i < j->n_stops; i++) qt_free(j->stops[i]);
    qt_free(j->prompt);
    qt_free(j->buf);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    qt_free(j);
}

// Appends bytes under the job's lock and wakes the reader.
static void job_append(job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    if (j->rpos == j->len) j->rpos = j->len = 0;   // all sent: reuse the buffer from the start
    if (j->len + n + 1 > j->cap) {
        j->cap = 2 * (j->len + n + 1);
        j->buf = qt_realloc(j->buf, j->cap);
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_append_event(job *j, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    size_t n = strlen(s);
    char *ev = qt_malloc(n + 16);
    memcpy(ev, "data: ", 6);
    memcpy(ev + 6, s, n);
    memcpy(ev + 6 + n, "\n\n", 2);
    job_append(j, ev, n + 8);
    qt_free(ev);
    qt_free(s);
}

static void job_finish(job *j) {
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

// ---- response objects -------------------------------------------------------------

static char *error_json(const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param); else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code); else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, char *body, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_body(c, status, s, "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *message, const char *type,
                                  const char *param, const char *code) {
    return send_body(c, status, error_json(message, type, param, code), "application/json");
}

static cJSON *usage_json(int prompt, int completion) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    return u;
}

static cJSON *chunk_head(const server *S, const job *j) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", S->o.model_name);
    return o;
}

// One streamed choice: delta text (may be NULL) and finish reason (NULL: not yet).
static void stream_choice(const server *S, job *j, const char *text, size_t len, const char *finish, bool role) {
    cJSON *o = chunk_head(S, j), *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    char *t = NULL;
    if (text) {
        t = qt_malloc(len + 1);
        memcpy(t, text, len);
        t[len] = 0;
    }
    if (j->chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (t) cJSON_AddStringToObject(d, "content", t);
    } else {
        cJSON_AddStringToObject(ch, "text", t ? t : "");
        cJSON_AddNullToObject(ch, "logprobs");
    }
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish); else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    job_append_event(j, o);
    cJSON_Delete(o);
    qt_free(t);
}

typedef struct {
    const server *S;
    job *j;
} stream_ctx;

static bool on_text(const char *text, size_t len, void *ud) {
    stream_ctx *sc = ud;
    pthread_mutex_lock(&sc->j->mu);
    bool cancelled = sc->j->cancelled;
    pthread_mutex_unlock(&sc->j->mu);
    if (cancelled) return false;
    stream_choice(sc->S, sc->j, text, len, NULL, false);
    return true;
}

static void run_job(server *S, job *j) {
    const qt_tokenizer *tk = S->m->tok;
    qt_sampler *smp = qt_sampler_init(&j->sp, S->m->cfg.n_vocab);
    qt_gen_params gp = { .max_tokens = j->max_tokens, .stops = (const char *const *)j->stops, .n_stops = j->n_stops };
    stream_ctx sc = { S, j };
    if (j->stream && j->chat) stream_choice(S, j, "", 0, NULL, true);
    qt_gen_result res;
    int rc = qt_generate(&S->sess, tk, smp, j->prompt, j->n_prompt, &gp, j->stream ? on_text : NULL, &sc, &res);
    qt_sampler_free(smp);
    if (rc != QT_OK) {
        char *e = error_json("generation failed (the prompt does not fit the context)", "server_error", NULL, NULL);
        if (j->stream) {
            job_append(j, "data: ", 6);
            job_append(j, e, strlen(e));
            job_append(j, "\n\n", 2);
        } else {
            job_append(j, e, strlen(e));
            j->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        qt_free(e);
        return;
    }
    const char *finish = strcmp(res.finish, "stop") == 0 ? "stop" : "length";
    if (j->stream) {
        stream_choice(S, j, NULL, 0, finish, false);
        if (j->include_usage) {
            cJSON *o = chunk_head(S, j);
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_json(res.n_prompt, res.n_gen));
            job_append_event(j, o);
            cJSON_Delete(o);
        }
        static const char done[] = "data: [DONE]\n\n";
        job_append(j, done, sizeof(done) - 1);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", j->id);
        cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion" : "text_completion");
        cJSON_AddNumberToObject(o, "created", (double)j->created);
        cJSON_AddStringToObject(o, "model", S->o.model_name);
        cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", 0);
        if (j->chat) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", res.text);
        } else {
            cJSON_AddStringToObject(ch, "text", res.text);
        }
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON_AddItemToArray(choices, ch);
        cJSON_AddItemToObject(o, "usage", usage_json(res.n_prompt, res.n_gen));
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        job_append(j, s, strlen(s));
        qt_free(s);
        j->status = MHD_HTTP_OK;
    }
    if (qt_log_level() >= 2)
        qt_log_debug("%s: prompt %d (%d cached), %d generated, %.3f s + %.3f s", j->id, res.n_prompt, res.n_reused,
                     res.n_gen, res.t_prompt, res.t_gen);
    qt_gen_result_free(&res);
}

static void *worker_main(void *arg) {
    server *S = arg;
    for (;;) {
        pthread_mutex_lock(&S->qmu);
        while (!S->head && !S->stopping) pthread_cond_wait(&S->qcv, &S->qmu);
        if (!S->head) {   // stopping and drained
            pthread_mutex_unlock(&S->qmu);
            return NULL;
        }
        job *j = S->head;
        S->head = j->next;
        if (!S->head) S->tail = NULL;
        S->qlen--;
        pthread_mutex_unlock(&S->qmu);
        pthread_mutex_lock(&j->mu);
        bool skip = j->cancelled || S->stopping;
        pthread_mutex_unlock(&j->mu);
        if (!skip) run_job(S, j);
        job_finish(j);
        job_unref(j);
    }
}

// ---- request parsing ---------------------------------------------------------------

// Fills the sampling and limit fields of j from the body; on error writes
// the message and the offending parameter and returns false.
static bool parse_common(server *S, const cJSON *b, job *j, const char **param, char *err, size_t err_cap) {
    j->sp = S->o.sampling;
    j->sp.seed = (uint64_t)time(NULL) * 2654435761u + atomic_fetch_add(&S->next_id, 1);
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "temperature")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 2) {
            *param = "temperature"; snprintf(err, err_cap, "temperature must be a number between 0 and 2"); return false;
        }
        j->sp.temp = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "top_p")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble <= 0 || v->valuedouble > 1) {
            *param = "top_p"; snprintf(err, err_cap, "top_p must be a number in (0, 1]"); return false;
        }
        j->sp.top_p = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "seed")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v)) { *param = "seed"; snprintf(err, err_cap, "seed must be an integer"); return false; }
        j->sp.seed = (uint64_t)(int64_t)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "n")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != 1) { *param = "n"; snprintf(err, err_cap, "only n = 1 is supported"); return false; }
    }
    int limit = S->o.max_tokens_limit;
    j->max_tokens = limit;
    v = cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens");
    if (!v || cJSON_IsNull(v)) v = cJSON_GetObjectItemCaseSensitive(b, "max_tokens");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble != (double)(int)v->valuedouble) {
            *param = "max_tokens"; snprintf(err, err_cap, "max_tokens must be a positive integer"); return false;
        }
        if (v->valuedouble > limit) {
            *param = "max_tokens";
            snprintf(err, err_cap, "max_tokens is %d, more than this server's limit of %d", (int)v->valuedouble, limit);
            return false;
        }
        j->max_tokens = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) { *param = "stream"; snprintf(err, err_cap, "stream must be a boolean"); return false; }
        j->stream = cJSON_IsTrue(v);
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
    if (cJSON_IsObject(so)) j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stop")) && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) {
            if (v->valuestring[0]) j->stops[j->n_stops++] = qt_strdup(v->valuestring);
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) <= MAX_STOPS) {
            const cJSON *e;
            cJSON_ArrayForEach(e, v) {
                if (!cJSON_IsString(e)) { *param = "stop"; snprintf(err, err_cap, "stop must hold strings"); return false; }
                if (e->valuestring[0]) j->stops[j->n_stops++] = qt_strdup(e->valuestring);
            }
        } else {
            *param = "stop"; snprintf(err, err_cap, "stop must be a string or an array of at most %d strings", MAX_STOPS);
            return false;
        }
    }
    return true;
}

// Message content: a string, or an array of parts of which the "text" ones are joined.
static char *message_text(const cJSON *content) {
    if (cJSON_IsString(content)) return qt_strdup(content->valuestring);
    if (!cJSON_IsArray(content)) return NULL;
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(t)) return NULL;
        n += strlen(t->valuestring);
    }
    char *s = qt_malloc(n + 1), *o = s;
    cJSON_ArrayForEach(p, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t k = strlen(t);
        memcpy(o, t, k);
        o += k;
    }
    *o = 0;
    return s;
}

// Content reader of a streamed response: waits for the worker's next bytes.
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->rpos == j->len && !j->done) pthread_cond_wait(&j->cv, &j->mu);
    ssize_t n;
    if (j->rpos < j->len) {
        size_t k = QT_MIN(max, j->len - j->rpos);
        memcpy(buf, j->buf + j->rpos, k);
        j->rpos += k;
        n = (ssize_t)k;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void stream_free(void *cls) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;   // a client that left mid-stream stops its generation
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

static enum MHD_Result handle_generate(server *S, struct MHD_Connection *c, const request *rq, bool chat) {
    cJSON *b = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "the request body is not valid JSON (expected a JSON object)",
                          "invalid_request_error", NULL, NULL);
    }
    job *j = qt_calloc(1, sizeof(job));
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->chat = chat;
    j->created = (long)time(NULL);
    snprintf(j->id, sizeof(j->id), "%s-%lu", chat ? "chatcmpl" : "cmpl", (unsigned long)atomic_fetch_add(&S->next_id, 1));
    const char *param = NULL;
    char err[512];
    const qt_tokenizer *tk = S->m->tok;
    unsigned status = MHD_HTTP_BAD_REQUEST;
    const char *code = NULL, *type = "invalid_request_error";
    if (!parse_common(S, b, j, &param, err, sizeof(err))) goto fail;
    if (chat) {
        if (!S->tmpl) {
            snprintf(err, sizeof(err), "this model has no chat template qtune can render: restart the server with "
                     "--chat-template NAME (%s), or use /v1/completions", qt_chat_family_list());
            goto fail;
        }
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
        int n = cJSON_GetArraySize(msgs);
        if (!cJSON_IsArray(msgs) || n == 0) {
            param = "messages";
            snprintf(err, sizeof(err), "messages must be a non-empty array of {\"role\", \"content\"}");
            goto fail;
        }
        qt_chat_msg *m = qt_calloc((size_t)n, sizeof(qt_chat_msg));
        char **owned = qt_calloc((size_t)n, sizeof(char *));
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            const cJSON *e = cJSON_GetArrayItem(msgs, i);
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
            owned[i] = message_text(cJSON_GetObjectItemCaseSensitive(e, "content"));
            if (!cJSON_IsString(role) || !owned[i]) {
                snprintf(err, sizeof(err), "messages[%d] needs a string \"role\" and a string (or text parts) \"content\"", i);
                ok = false;
                break;
            }
            m[i] = (qt_chat_msg){ role->valuestring, owned[i] };
        }
        if (ok) {
            j->n_prompt = qt_chat_tokenize(S->m, S->tmpl, m, n, true, &j->prompt, err, sizeof(err));
            ok = j->n_prompt >= 0;
        }
        for (int i = 0; i < n; i++) qt_free(owned[i]);
        qt_free(owned);
        qt_free(m);
        if (!ok) { param = "messages"; goto fail; }
        const char *const *ts = qt_chat_family_stops(S->tmpl->family);
        for (int i = 0; ts[i] && j->n_stops < MAX_STOPS + 8; i++) j->stops[j->n_stops++] = qt_strdup(ts[i]);
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) {
            param = "prompt";
            snprintf(err, sizeof(err), "prompt must be a string (or an array of one string)");
            goto fail;
        }
        j->n_prompt = qt_text_tokenize(tk, p->valuestring, strlen(p->valuestring), qt_tokenizer_add_bos(tk), false, &j->prompt);
        if (j->n_prompt <= 0) {
            param = "prompt";
            snprintf(err, sizeof(err), "the prompt is empty");
            goto fail;
        }
    }
    int room = S->ctx->n_ctx - j->n_prompt;
    if (room < 1) {
        param = chat ? "messages" : "prompt";
        code = "context_length_exceeded";
        snprintf(err, sizeof(err), "the prompt is %d tokens; this server's context holds %d", j->n_prompt, S->ctx->n_ctx);
        goto fail;
    }
    if (j->max_tokens > room) j->max_tokens = room;
    cJSON_Delete(b);
    b = NULL;

    pthread_mutex_lock(&S->qmu);
    if (S->qlen >= S->o.max_queue || S->stopping) {
        pthread_mutex_unlock(&S->qmu);
        snprintf(err, sizeof(err), "the server is busy (%d requests waiting); retry later", S->o.max_queue);
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        type = "server_error";
        goto fail;
    }
    j->refs = 3;   // this handler, the worker, the response (stream) or none (then dropped below)
    if (S->tail) S->tail->next = j; else S->head = j;
    S->tail = j;
    S->qlen++;
    pthread_cond_signal(&S->qcv);
    pthread_mutex_unlock(&S->qmu);

    if (j->stream) {
        struct MHD_Response *r;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        job_unref(j);
        return ret;
    }
    job_unref(j);   // no response object holds it
    pthread_mutex_lock(&j->mu);
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    char *body = j->buf ? strndup(j->buf, j->len) : qt_strdup("{}");
    unsigned st = j->status ? (unsigned)j->status : MHD_HTTP_INTERNAL_SERVER_ERROR;
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    return send_body(c, st, body, "application/json");

fail:
    cJSON_Delete(b);
    job_unref(j);
    return send_error(c, status, err, type, param, code);
}

// ---- routing -----------------------------------------------------------------------

static bool authorized(const server *S, struct MHD_Connection *c) {
    if (!S->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *k = h + 7, *want = S->o.api_key;
    size_t nk = strlen(k), nw = strlen(want);
    unsigned diff = nk != nw;
    for (size_t i = 0; i < nw; i++) diff |= (unsigned)(want[i] ^ (i < nk ? k[i] : 0));   // no early exit
    return diff == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    server *S = cls;
    request *rq = *con_cls;
    if (!rq) {
        rq = qt_calloc(1, sizeof(request));
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_big) {
            if (rq->len + *upload_size > S->o.max_body) {
                rq->too_big = true;
                qt_free(rq->body);
                rq->body = NULL;
                rq->len = 0;
            } else {
                char *nb = qt_realloc(rq->body, rq->len + *upload_size + 1);
                rq->body = nb;
                memcpy(rq->body + rq->len, upload_data, *upload_size);
                rq->len += *upload_size;
                rq->body[rq->len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        return send_json(c, MHD_HTTP_OK, o);
    }
    if (strncmp(url, "/v1/", 4) != 0)
        return send_error(c, MHD_HTTP_NOT_FOUND, "unknown path", "invalid_request_error", NULL, "not_found");
    if (!authorized(S, c))
        return send_error(c, MHD_HTTP_UNAUTHORIZED, "missing or incorrect API key (send \"Authorization: Bearer KEY\")",
                          "invalid_request_error", NULL, "invalid_api_key");
    if (rq->too_big) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the request body is larger than this server's limit of %zu bytes", S->o.max_body);
        return send_error(c, 413, msg, "invalid_request_error", NULL, "request_too_large");
    }
    if (strcmp(url, "/v1/models") == 0 && get) {
        cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data"), *mo = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddStringToObject(mo, "id", S->o.model_name);
        cJSON_AddStringToObject(mo, "object", "model");
        cJSON_AddNumberToObject(mo, "created", 0);
        cJSON_AddStringToObject(mo, "owned_by", "qtune");
        cJSON_AddItemToArray(data, mo);
        return send_json(c, MHD_HTTP_OK, o);
    }
    if (strcmp(url, "/v1/chat/completions") == 0 && post) return handle_generate(S, c, rq, true);
    if (strcmp(url, "/v1/completions") == 0 && post) return handle_generate(S, c, rq, false);
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions"))
        return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "invalid_request_error", NULL, NULL);
    return send_error(c, MHD_HTTP_NOT_FOUND, "unknown path", "invalid_request_error", NULL, "not_found");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    request *rq = *con_cls;
    if (!rq) return;
    qt_free(rq->body);
    qt_free(rq);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    qt_log_debug("http: %s", line);
}

int qt_server_run(const qt_model *m, qt_ctx *ctx, const qt_chat_template *tmpl, const qt_server_opts *o) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        qt_log_error("--host %s: not an IPv4 address (use 127.0.0.1, or 0.0.0.0 for every interface)", o->host);
        return QT_ERR;
    }
    server *S = qt_calloc(1, sizeof(server));
    S->m = m;
    S->ctx = ctx;
    S->tmpl = tmpl;
    S->o = *o;
    atomic_init(&S->next_id, 1);
    qt_session_init(&S->sess, ctx);
    pthread_mutex_init(&S->qmu, NULL);
    pthread_cond_init(&S->qcv, NULL);

    // SIGINT / SIGTERM are taken by sigwait below: block them in every thread we start
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    int rc = QT_ERR;
    pthread_t worker;
    bool have_worker = pthread_create(&worker, NULL, worker_main, S) == 0;
    struct MHD_Daemon *d = NULL;
    if (have_worker)
        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, handle, S,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                             MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                             MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                             MHD_OPTION_END);
    if (!d) {
        qt_log_error("could not listen on %s:%d (%s)", o->host, o->port, errno ? strerror(errno) : "libmicrohttpd failed");
    } else {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        int port = di ? di->port : o->port;
        fprintf(stderr, "listening on http://%s:%d (model %s, context %d)\n", o->host, port, o->model_name, ctx->n_ctx);
        fflush(stderr);
        int sig = 0;
        sigwait(&sigs, &sig);
        qt_log_info("signal %d: stopping", sig);
        rc = QT_OK;
    }
    // stop the worker first: pending jobs finish (cancelled ones are skipped) so blocked handlers return
    pthread_mutex_lock(&S->qmu);
    S->stopping = true;
    pthread_cond_broadcast(&S->qcv);
    pthread_mutex_unlock(&S->qmu);
    if (have_worker) pthread_join(worker, NULL);
    if (d) MHD_stop_daemon(d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    qt_session_free(&S->sess);
    pthread_mutex_destroy(&S->qmu);
    pthread_cond_destroy(&S->qcv);
    qt_free(S);
    return rc;
}
