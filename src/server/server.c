// server.c: the OpenAI-compatible HTTP server of server.h. HTTP parsing,
// connections and chunked transfer are libmicrohttpd's (one thread per
// connection); this file guards the connections (total and per-address caps,
// a deadline for a request's headers and body, an idle deadline for kept-alive
// connections, enforced by a watchdog that shuts the socket down), routes,
// answers CORS preflights, and runs the requests api.c validated: a FIFO
// served by one scheduler thread that owns the model context and its reusable
// KV cache (server/gen.h). Each choice of a request is a slot with its own
// sampler, grammar state and logprobs; a client that disconnects (streamed or
// not, queued or generating) cancels its job at the next token.
// Responses follow the OpenAI API reference: chat.completion,
// chat.completion.chunk (server-sent events ending with "data: [DONE]"),
// text_completion, embedding lists, errors {"error": {"message", "type",
// "param", "code"}}. llama.cpp's server is the model for the prompt cache.
// Deliberately not here yet: decoding several slots in one batched forward
// (the scheduler runs one slot at a time; the slot struct is where batching
// will hook in).
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
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
#include "server/server-impl.h"

qt_server_opts qt_server_defaults(void) {
    return (qt_server_opts){
        .host = "127.0.0.1",
        .port = 8080,
        .max_tokens_limit = 2048,
        .max_body = 1 << 20,
        .max_queue = 64,
        .max_connections = 1024,
        .max_connections_per_ip = 256,
        .request_timeout = 10,
        .idle_timeout = 30,
        .sampling = qt_sampler_defaults(),
        .model_name = "qtune",
    };
}

// ---- connections ------------------------------------------------------------------

enum { CONN_WAITING, CONN_RECEIVING, CONN_BUSY };   // before a request, reading it, answering it

typedef struct conn_rec conn_rec;
struct conn_rec {
    int fd;
    int state;
    double since;        // when the state began (qt_time_s)
    bool shut;           // the watchdog shut it down
    bool kept;           // it has answered a request (keep-alive): waiting uses the idle deadline
    conn_rec *prev, *next;
};

typedef struct job job;
struct job {
    qt_request rq;
    char id[48];
    long created;
    int fd;              // the client's socket, for disconnect checks
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
    qt_api_ctx api;
    qt_grammar_vocab gvocab;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    job *head, *tail;
    int qlen;
    bool stopping;
    atomic_ulong next_id;
    atomic_int running;    // the scheduler is running a job (reported by /health)
    pthread_mutex_t cmu;   // the connection list
    conn_rec *conns;
    bool watchdog_stop;
    pthread_cond_t wcv;
} server;

typedef struct {
    char *body;
    size_t len;
    bool too_big;
} request;

// Waits on cv (mu held) for at most ms milliseconds.
static void wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec += ts.tv_nsec / 1000000000L; ts.tv_nsec %= 1000000000L; }
    pthread_cond_timedwait(cv, mu, &ts);
}

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe) {
    server *S = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_rec *r = qt_calloc(1, sizeof(conn_rec));
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? ci->connect_fd : -1;
        r->state = CONN_WAITING;
        r->since = qt_time_s();
        pthread_mutex_lock(&S->cmu);
        r->next = S->conns;
        if (S->conns) S->conns->prev = r;
        S->conns = r;
        pthread_mutex_unlock(&S->cmu);
        *socket_context = r;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_rec *r = *socket_context;
        pthread_mutex_lock(&S->cmu);   // the watchdog never touches a socket after this
        if (r->prev) r->prev->next = r->next; else S->conns = r->next;
        if (r->next) r->next->prev = r->prev;
        pthread_mutex_unlock(&S->cmu);
        qt_free(r);
        *socket_context = NULL;
    }
}

static conn_rec *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_state(server *S, struct MHD_Connection *c, int state) {
    conn_rec *r = conn_of(c);
    if (!r) return;
    pthread_mutex_lock(&S->cmu);
    r->state = state;
    r->since = qt_time_s();
    if (state == CONN_WAITING) r->kept = true;
    pthread_mutex_unlock(&S->cmu);
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

// Closes connections past their deadlines: a request's headers and body must
// arrive within request_timeout, a kept-alive connection may idle idle_timeout.
// shutdown() wakes the connection's thread with end-of-file; libmicrohttpd
// then closes the socket itself.
static void *watchdog_main(void *arg) {
    server *S = arg;
    pthread_mutex_lock(&S->cmu);
    while (!S->watchdog_stop) {
        wait_ms(&S->wcv, &S->cmu, 250);
        double now = qt_time_s();
        for (conn_rec *r = S->conns; r; r = r->next) {
            if (r->shut || r->fd < 0 || r->state == CONN_BUSY) continue;
            double limit = r->state == CONN_WAITING && r->kept ? S->o.idle_timeout : S->o.request_timeout;
            if (now - r->since > limit) {
                shutdown(r->fd, SHUT_RDWR);
                r->shut = true;
            }
        }
    }
    pthread_mutex_unlock(&S->cmu);
    return NULL;
}

// ---- jobs ----------------------------------------------------------------------

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    qt_request_free(&j->rq);
    qt_free(j->buf);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    qt_free(j);
}

static bool job_cancelled(job *j) {
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

static void job_cancel(job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
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

static void job_append_json(job *j, cJSON *o, bool event) {
    char *s = cJSON_PrintUnformatted(o);
    size_t n = strlen(s);
    if (event) job_append(j, "data: ", 6);
    job_append(j, s, n);
    if (event) job_append(j, "\n\n", 2);
    free(s);
}

static void job_finish(job *j) {
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

// ---- response objects -------------------------------------------------------------

static cJSON *error_obj(const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param); else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code); else cJSON_AddNullToObject(e, "code");
    return root;
}

static bool origin_allowed(const char *list, const char *origin, size_t *n_out) {
    (void)n_out;
    if (!strcmp(list, "*")) return true;
    size_t on = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && t[-1] == ' ') t--;
        if ((size_t)(t - p) == on && !memcmp(p, origin, on)) return true;
        p = e;
    }
    return false;
}

static void add_cors(const server *S, struct MHD_Connection *c, struct MHD_Response *r) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin || !S->o.cors_origins || !origin_allowed(S->o.cors_origins, origin, NULL)) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", strcmp(S->o.cors_origins, "*") ? origin : "*");
    MHD_add_response_header(r, "Vary", "Origin");
}

static enum MHD_Result queue_response(const server *S, struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    add_cors(S, c, r);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_body(const server *S, struct MHD_Connection *c, unsigned status, char *body, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    return queue_response(S, c, status, r);
}

static enum MHD_Result send_json(const server *S, struct MHD_Connection *c, unsigned status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *copy = qt_strdup(s);   // (cJSON's allocator and ours may differ)
    free(s);
    return send_body(S, c, status, copy, "application/json");
}

static enum MHD_Result send_error(const server *S, struct MHD_Connection *c, unsigned status, const char *message,
                                  const char *type, const char *param, const char *code) {
    return send_json(S, c, status, error_obj(message, type, param, code));
}

static cJSON *usage_json(int prompt, int completion) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    return u;
}

static cJSON *head_obj(const server *S, const job *j, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", S->o.model_name);
    return o;
}

// ---- slots: one choice being generated ------------------------------------------------

typedef struct {
    server *S;
    job *j;
    int index;
    qt_grammar_state *gs;
    cJSON *lp;            // chat: logprobs.content entries; completions: {tokens, token_logprobs, top_logprobs, text_offset}
    cJSON *pending;       // streamed chat: entries not yet sent with a chunk
    size_t text_offset;   // completions: offset of the next token's text
    bool streaming;       // text deltas go out as they come
    int n_checks;
} slot;

// log-softmax of raw logits at id, and the top k entries
static void logprob_entry(slot *sl, int32_t id, const float *raw) {
    const qt_model *m = sl->S->m;
    int n = m->cfg.n_vocab, k = sl->j->rq.top_logprobs;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = raw[i] > mx ? raw[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)raw[i] - mx);
    double lse = mx + log(sum);
    int top[QT_MAX_TOP_LOGPROBS];
    int nt = 0;
    for (int i = 0; i < n && k > 0; i++) {   // insertion into a sorted top-k (k <= 20)
        if (nt == k && raw[i] <= raw[top[nt - 1]]) continue;
        int p = nt < k ? nt++ : k - 1;
        while (p > 0 && raw[top[p - 1]] < raw[i]) { top[p] = top[p - 1]; p--; }
        top[p] = i;
    }
    if (sl->j->rq.kind == REQ_CHAT) {
        cJSON *e = qt_api_token_json(m, id, true, "token");
        cJSON_AddNumberToObject(e, "logprob", (double)raw[id] - lse);
        cJSON *tl = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int i = 0; i < nt; i++) {
            cJSON *t = qt_api_token_json(m, top[i], true, "token");
            cJSON_AddNumberToObject(t, "logprob", (double)raw[top[i]] - lse);
            cJSON_AddItemToArray(tl, t);
        }
        cJSON_AddItemToArray(sl->streaming ? sl->pending : sl->lp, e);
        return;
    }
    cJSON *tokj = qt_api_token_json(m, id, false, "t");
    const char *text = cJSON_GetObjectItem(tokj, "t")->valuestring;
    cJSON_AddItemToArray(cJSON_GetObjectItem(sl->lp, "tokens"), cJSON_CreateString(text));
    cJSON_AddItemToArray(cJSON_GetObjectItem(sl->lp, "token_logprobs"), cJSON_CreateNumber((double)raw[id] - lse));
    cJSON *tops = cJSON_CreateObject();
    for (int i = 0; i < nt; i++) {
        cJSON *tj = qt_api_token_json(m, top[i], false, "t");
        const char *tt = cJSON_GetObjectItem(tj, "t")->valuestring;
        if (!cJSON_GetObjectItemCaseSensitive(tops, tt)) cJSON_AddNumberToObject(tops, tt, (double)raw[top[i]] - lse);
        cJSON_Delete(tj);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(sl->lp, "top_logprobs"), tops);
    cJSON_AddItemToArray(cJSON_GetObjectItem(sl->lp, "text_offset"), cJSON_CreateNumber((double)sl->text_offset));
    size_t len = 0;
    qt_token_to_piece(m->tok, id, false, &len);
    sl->text_offset += len;
    cJSON_Delete(tokj);
}

static int slot_before_sample(void *ud) {
    slot *sl = ud;
    if (job_cancelled(sl->j)) return QT_GEN_ABORT;
    if (++sl->n_checks % 4 == 0 && client_gone(sl->j->fd)) {
        job_cancel(sl->j);
        return QT_GEN_ABORT;
    }
    if (sl->gs && qt_grammar_finished(sl->gs)) return QT_GEN_STOP;
    return QT_GEN_GO;
}

static bool slot_allows(void *ud, int32_t id) {
    slot *sl = ud;
    return qt_grammar_allows(sl->gs, &sl->S->gvocab, id);
}

static void slot_mask(void *ud, float *logits) {
    slot *sl = ud;
    const qt_grammar_vocab *v = &sl->S->gvocab;
    qt_grammar_mask(sl->gs, v, logits);
    for (int i = 0; i < v->n_vocab; i++)
        if (logits[i] != -INFINITY) return;
    for (int i = 0; i < v->n_vocab; i++)   // nothing this vocabulary can write fits: let it end
        if (v->eog[i]) logits[i] = 0;
}

static bool slot_on_token(void *ud, int32_t id, const float *raw) {
    slot *sl = ud;
    if (sl->gs && !sl->S->gvocab.eog[id] &&
        qt_grammar_accept(sl->gs, sl->S->gvocab.piece[id], sl->S->gvocab.len[id]) != QT_OK)
        return false;   // (the mask allowed it: cannot happen)
    if (sl->j->rq.logprobs) logprob_entry(sl, id, raw);
    return true;
}

static void stream_chunk(slot *sl, const char *text, size_t len, bool role, const char *finish, cJSON *extra_delta) {
    server *S = sl->S;
    job *j = sl->j;
    bool chat = j->rq.kind == REQ_CHAT;
    cJSON *o = head_obj(S, j, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", sl->index);
    char *t = NULL;
    if (text) {
        t = qt_malloc(len + 1);
        memcpy(t, text, len);
        t[len] = 0;
    }
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (t) cJSON_AddStringToObject(d, "content", t);
        if (extra_delta) {
            cJSON *x;
            while ((x = extra_delta->child)) cJSON_AddItemToObject(d, x->string, cJSON_DetachItemViaPointer(extra_delta, x));
        }
        if (j->rq.logprobs && sl->pending && cJSON_GetArraySize(sl->pending)) {
            cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
            cJSON_AddItemToObject(lp, "content", sl->pending);
            sl->pending = cJSON_CreateArray();
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
    } else {
        cJSON_AddStringToObject(ch, "text", t ? t : "");
        if (j->rq.logprobs && sl->lp) {   // completions: this chunk's tokens
            cJSON_AddItemToObject(ch, "logprobs", sl->lp);
            sl->lp = cJSON_CreateObject();
            cJSON_AddArrayToObject(sl->lp, "tokens");
            cJSON_AddArrayToObject(sl->lp, "token_logprobs");
            cJSON_AddArrayToObject(sl->lp, "top_logprobs");
            cJSON_AddArrayToObject(sl->lp, "text_offset");
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
    }
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish); else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    job_append_json(j, o, true);
    cJSON_Delete(o);
    qt_free(t);
}

static bool slot_on_text(const char *text, size_t len, void *ud) {
    slot *sl = ud;
    if (job_cancelled(sl->j)) return false;
    if (sl->streaming) stream_chunk(sl, text, len, false, NULL, NULL);
    return true;
}

// Runs one choice; appends its choice object to choices (not streamed) or streams it. Returns tokens generated, -1 on error.
static int run_slot(server *S, job *j, int index, cJSON *choices, int *n_prompt_out) {
    qt_request *rq = &j->rq;
    bool chat = rq->kind == REQ_CHAT;
    slot sl = { .S = S, .j = j, .index = index };
    sl.streaming = rq->stream && rq->tools_format == TOOLS_NONE;
    if (rq->grammar) sl.gs = qt_grammar_state_init(rq->grammar);
    if (rq->logprobs) {
        if (chat) {
            sl.lp = cJSON_CreateArray();
            sl.pending = cJSON_CreateArray();
        } else {
            sl.lp = cJSON_CreateObject();
            cJSON_AddArrayToObject(sl.lp, "tokens");
            cJSON_AddArrayToObject(sl.lp, "token_logprobs");
            cJSON_AddArrayToObject(sl.lp, "top_logprobs");
            cJSON_AddArrayToObject(sl.lp, "text_offset");
        }
    }
    qt_sampler_params sp = rq->sp;
    sp.seed += (uint64_t)index;   // choices differ; the same seed gives the same choices
    qt_sampler *smp = qt_sampler_init(&sp, S->m->cfg.n_vocab);
    if (rq->n_bias) qt_sampler_set_bias(smp, rq->bias_ids, rq->bias, rq->n_bias);
    qt_gen_hooks hooks = { slot_before_sample, sl.gs ? slot_allows : NULL, slot_mask, slot_on_token, &sl };
    qt_gen_params gp = { .max_tokens = rq->max_tokens, .stops = (const char *const *)rq->stops, .n_stops = rq->n_stops,
                         .special_text = rq->special_text, .hooks = &hooks };
    if (rq->stream && chat) stream_chunk(&sl, rq->tools_format == TOOLS_NONE ? "" : NULL, 0, true, NULL, NULL);
    qt_gen_result res;
    int rc = qt_generate(&S->sess, S->m->tok, smp, rq->prompt, rq->n_prompt, &gp, slot_on_text, &sl, &res);
    qt_sampler_free(smp);
    qt_grammar_state_free(sl.gs);
    if (rc != QT_OK) {
        cJSON_Delete(sl.lp);
        cJSON_Delete(sl.pending);
        return -1;
    }
    *n_prompt_out = res.n_prompt;
    const char *finish = strcmp(res.finish, "stop") == 0 ? "stop" : "length";
    // tool calls: parsed out of the whole text
    cJSON *calls = NULL;
    size_t content_len = res.len;
    if (rq->tools_format != TOOLS_NONE && rq->tools) {
        uint64_t seed = S->api.seed_base ^ (uint64_t)atomic_fetch_add(&S->next_id, 1) * 0x9e3779b97f4a7c15ull;
        calls = qt_tool_calls_parse(res.text, res.len, rq->tools_format, rq->tools, &content_len, &seed);
        if (calls) finish = "tool_calls";
        while (calls && content_len > 0 && (res.text[content_len - 1] == ' ' || res.text[content_len - 1] == '\n')) content_len--;
    }
    char *content = qt_malloc(content_len + 1);
    memcpy(content, res.text, content_len);
    content[content_len] = 0;
    if (rq->stream) {
        if (!sl.streaming) {   // tools: the result in one delta
            cJSON *extra = cJSON_CreateObject();
            if (calls) {
                int k = 0;
                cJSON *c;
                cJSON_ArrayForEach(c, calls) cJSON_AddNumberToObject(c, "index", k++);
                cJSON_AddItemToObject(extra, "tool_calls", calls);
                calls = NULL;
            }
            stream_chunk(&sl, content_len || !cJSON_GetObjectItem(extra, "tool_calls") ? content : NULL, content_len, false,
                         NULL, extra);
            cJSON_Delete(extra);
        }
        stream_chunk(&sl, NULL, 0, false, finish, NULL);
    } else {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", index);
        if (chat) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            if (calls && content_len == 0) cJSON_AddNullToObject(msg, "content");
            else cJSON_AddStringToObject(msg, "content", content);
            if (calls) {
                cJSON_AddItemToObject(msg, "tool_calls", calls);
                calls = NULL;
            }
            if (sl.lp) {
                cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
                cJSON_AddItemToObject(lp, "content", sl.lp);
                sl.lp = NULL;
            } else {
                cJSON_AddNullToObject(ch, "logprobs");
            }
        } else {
            if (rq->echo) {
                size_t pl = strlen(rq->prompt_text);
                char *t = qt_malloc(pl + content_len + 1);
                memcpy(t, rq->prompt_text, pl);
                memcpy(t + pl, content, content_len + 1);
                cJSON_AddStringToObject(ch, "text", t);
                qt_free(t);
            } else {
                cJSON_AddStringToObject(ch, "text", content);
            }
            if (sl.lp) { cJSON_AddItemToObject(ch, "logprobs", sl.lp); sl.lp = NULL; }
            else cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_Delete(calls);
    cJSON_Delete(sl.lp);
    cJSON_Delete(sl.pending);
    qt_free(content);
    int n_gen = res.n_gen;
    if (qt_log_level() >= 2)
        qt_log_debug("%s[%d]: prompt %d (%d cached), %d generated (%s), %.3f s + %.3f s", j->id, index, res.n_prompt,
                     res.n_reused, res.n_gen, res.finish, res.t_prompt, res.t_gen);
    qt_gen_result_free(&res);
    return n_gen;
}

static void job_error(job *j, int status, const char *message) {
    cJSON *e = error_obj(message, status >= 500 ? "server_error" : "invalid_request_error", NULL, NULL);
    job_append_json(j, e, j->rq.stream);
    cJSON_Delete(e);
    if (!j->rq.stream) j->status = status;
}

static void run_generate(server *S, job *j) {
    qt_request *rq = &j->rq;
    bool chat = rq->kind == REQ_CHAT;
    cJSON *o = head_obj(S, j, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    int n_gen = 0, n_prompt = rq->n_prompt;
    for (int i = 0; i < rq->n; i++) {
        if (job_cancelled(j)) break;
        int k = run_slot(S, j, i, choices, &n_prompt);
        if (k < 0) {
            job_error(j, 500, "generation failed (the prompt does not fit the context)");
            cJSON_Delete(o);
            return;
        }
        n_gen += k;
    }
    if (rq->stream) {
        if (rq->include_usage) {
            cJSON *u = head_obj(S, j, chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(u, "choices");
            cJSON_AddItemToObject(u, "usage", usage_json(n_prompt, n_gen));
            job_append_json(j, u, true);
            cJSON_Delete(u);
        }
        static const char done[] = "data: [DONE]\n\n";
        job_append(j, done, sizeof(done) - 1);
    } else {
        cJSON_AddItemToObject(o, "usage", usage_json(n_prompt, n_gen));
        job_append_json(j, o, false);
        j->status = MHD_HTTP_OK;
    }
    cJSON_Delete(o);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void run_embed(server *S, job *j) {
    qt_request *rq = &j->rq;
    int C = S->m->cfg.n_embd, total = 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    float *pooled = qt_malloc(sizeof(float) * (size_t)C);
    for (int i = 0; i < rq->n_inputs && !job_cancelled(j); i++) {
        int n = rq->n_input[i];
        float *hid = qt_malloc(sizeof(float) * (size_t)n * (size_t)C);
        qt_session_reset(&S->sess);   // the cache then holds this input, not a prompt to reuse
        S->ctx->hidden_out = hid;
        const float *ok = qt_ctx_eval(S->ctx, rq->inputs[i], n);
        S->ctx->hidden_out = NULL;
        qt_session_reset(&S->sess);
        if (!ok) {
            qt_free(hid);
            job_error(j, 500, "embedding failed");
            goto done;
        }
        // mean over tokens, then L2-normalised (llama-server's --pooling mean with normalisation)
        double norm = 0;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = 0; t < n; t++) s += hid[(size_t)t * (size_t)C + (size_t)c];
            pooled[c] = (float)(s / n);
            norm += (double)pooled[c] * pooled[c];
        }
        norm = sqrt(norm);
        for (int c = 0; c < C; c++) pooled[c] = norm > 0 ? (float)(pooled[c] / norm) : 0.0f;
        qt_free(hid);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "object", "embedding");
        cJSON_AddNumberToObject(e, "index", i);
        if (rq->base64) {
            size_t nb = sizeof(float) * (size_t)C, no = 4 * ((nb + 2) / 3);
            const unsigned char *b = (const unsigned char *)pooled;
            char *s = qt_malloc(no + 1);
            size_t w = 0;
            for (size_t k = 0; k < nb; k += 3) {
                uint32_t v = (uint32_t)b[k] << 16 | (k + 1 < nb ? (uint32_t)b[k + 1] << 8 : 0) | (k + 2 < nb ? b[k + 2] : 0);
                s[w++] = B64[v >> 18];
                s[w++] = B64[(v >> 12) & 63];
                s[w++] = k + 1 < nb ? B64[(v >> 6) & 63] : '=';
                s[w++] = k + 2 < nb ? B64[v & 63] : '=';
            }
            s[w] = 0;
            cJSON_AddStringToObject(e, "embedding", s);
            qt_free(s);
        } else {
            cJSON *v = cJSON_AddArrayToObject(e, "embedding");
            for (int c = 0; c < C; c++) cJSON_AddItemToArray(v, cJSON_CreateNumber(pooled[c]));
        }
        cJSON_AddItemToArray(data, e);
        total += n;
    }
    cJSON_AddStringToObject(o, "model", S->o.model_name);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", total);
    cJSON_AddNumberToObject(u, "total_tokens", total);
    job_append_json(j, o, false);
    j->status = MHD_HTTP_OK;
done:
    qt_free(pooled);
    cJSON_Delete(o);
}

// The scheduler: jobs in arrival order, each choice a slot run to completion.
static void *scheduler_main(void *arg) {
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
        bool skip = job_cancelled(j) || S->stopping || client_gone(j->fd);
        if (!skip) {
            atomic_store(&S->running, 1);
            if (j->rq.kind == REQ_EMBEDDING) run_embed(S, j);
            else run_generate(S, j);
            atomic_store(&S->running, 0);
        }
        job_finish(j);
        job_unref(j);
    }
}

// ---- request handling ---------------------------------------------------------------

// Content reader of a streamed response: waits for the scheduler's next bytes,
// checking that the client is still there.
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->rpos == j->len && !j->done) {
        wait_ms(&j->cv, &j->mu, 100);
        if (j->rpos == j->len && !j->done && client_gone(j->fd)) {
            j->cancelled = true;
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
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
    job_cancel(cls);   // a client that left mid-stream stops its generation
    job_unref(cls);
}

static enum MHD_Result handle_job(server *S, struct MHD_Connection *c, const request *rq, req_kind kind) {
    cJSON *b = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->len);
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return send_error(S, c, MHD_HTTP_BAD_REQUEST, "the request body is not valid JSON (expected a JSON object)",
                          "invalid_request_error", NULL, NULL);
    }
    job *j = qt_calloc(1, sizeof(job));
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->fd = conn_fd(c);
    j->created = (long)time(NULL);
    unsigned long id = atomic_fetch_add(&S->next_id, 1);
    snprintf(j->id, sizeof(j->id), "%s-%lu", kind == REQ_CHAT ? "chatcmpl" : kind == REQ_COMPLETION ? "cmpl" : "embd", id);
    qt_api_ctx api = S->api;
    api.seed_base = (uint64_t)time(NULL) * 2654435761u + id * 0x9e3779b97f4a7c15ull;
    qt_api_error e;
    int rc = qt_api_parse(&api, kind, b, &j->rq, &e);
    cJSON_Delete(b);
    if (rc != QT_OK) {
        job_unref(j);
        return send_error(S, c, (unsigned)e.status, e.message, e.type, e.param, e.code);
    }
    if (S->o.verbose_prompt && j->rq.prompt_text)
        qt_log_info("%s: prompt of %d tokens:\n%s", j->id, j->rq.n_prompt, j->rq.prompt_text);
    pthread_mutex_lock(&S->qmu);
    if (S->qlen >= S->o.max_queue || S->stopping) {
        pthread_mutex_unlock(&S->qmu);
        job_unref(j);
        char msg[128];
        snprintf(msg, sizeof(msg), "the server is busy (%d requests waiting); retry later", S->o.max_queue);
        return send_error(S, c, MHD_HTTP_SERVICE_UNAVAILABLE, msg, "server_error", NULL, NULL);
    }
    j->refs = 3;   // this handler, the scheduler, the response (stream) or none (then dropped below)
    if (S->tail) S->tail->next = j; else S->head = j;
    S->tail = j;
    S->qlen++;
    pthread_cond_signal(&S->qcv);
    pthread_mutex_unlock(&S->qmu);

    if (j->rq.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = queue_response(S, c, MHD_HTTP_OK, r);
        job_unref(j);
        return ret;
    }
    job_unref(j);   // no response object holds it
    pthread_mutex_lock(&j->mu);
    bool gone = false;
    while (!j->done) {
        wait_ms(&j->cv, &j->mu, 100);
        if (!j->done && client_gone(j->fd)) {   // the client left: stop its generation (queued or running)
            j->cancelled = true;
            gone = true;
            break;
        }
    }
    char *body = !gone && j->buf ? strndup(j->buf, j->len) : NULL;
    unsigned st = j->status ? (unsigned)j->status : MHD_HTTP_INTERNAL_SERVER_ERROR;
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    if (gone) return MHD_NO;   // closes the connection
    if (!body) body = qt_strdup("{}");
    return send_body(S, c, st, body, "application/json");
}

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

static cJSON *model_obj(const server *S) {
    cJSON *mo = cJSON_CreateObject();
    cJSON_AddStringToObject(mo, "id", S->o.model_name);
    cJSON_AddStringToObject(mo, "object", "model");
    cJSON_AddNumberToObject(mo, "created", 0);
    cJSON_AddStringToObject(mo, "owned_by", "qtune");
    return mo;
}

static enum MHD_Result preflight(server *S, struct MHD_Connection *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin && S->o.cors_origins && origin_allowed(S->o.cors_origins, origin, NULL)) {
        const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", want && strlen(want) < 1024 ? want : "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    }
    return queue_response(S, c, MHD_HTTP_NO_CONTENT, r);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    server *S = cls;
    request *rq = *con_cls;
    if (!rq) {
        rq = qt_calloc(1, sizeof(request));
        *con_cls = rq;
        conn_state(S, c, CONN_RECEIVING);
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
                rq->body = qt_realloc(rq->body, rq->len + *upload_size + 1);
                memcpy(rq->body + rq->len, upload_data, *upload_size);
                rq->len += *upload_size;
                rq->body[rq->len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    conn_state(S, c, CONN_BUSY);
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) return preflight(S, c);
    if (!strcmp(url, "/health")) {   // (llama-server's shape, with the queue: the abuse test watches it)
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        pthread_mutex_lock(&S->qmu);
        cJSON_AddNumberToObject(o, "jobs_waiting", S->qlen);
        pthread_mutex_unlock(&S->qmu);
        cJSON_AddBoolToObject(o, "generating", atomic_load(&S->running) != 0);
        return send_json(S, c, MHD_HTTP_OK, o);
    }
    if (strncmp(url, "/v1/", 4) != 0)
        return send_error(S, c, MHD_HTTP_NOT_FOUND, "unknown path", "invalid_request_error", NULL, "not_found");
    if (!authorized(S, c))
        return send_error(S, c, MHD_HTTP_UNAUTHORIZED, "missing or incorrect API key (send \"Authorization: Bearer KEY\")",
                          "invalid_request_error", NULL, "invalid_api_key");
    if (rq->too_big) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the request body is larger than this server's limit of %zu bytes", S->o.max_body);
        return send_error(S, c, 413, msg, "invalid_request_error", NULL, "request_too_large");
    }
    if (!strcmp(url, "/v1/models") && get) {
        cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddItemToArray(data, model_obj(S));
        return send_json(S, c, MHD_HTTP_OK, o);
    }
    if (!strncmp(url, "/v1/models/", 11) && get) {
        if (!strcmp(url + 11, S->o.model_name)) return send_json(S, c, MHD_HTTP_OK, model_obj(S));
        char msg[256];
        snprintf(msg, sizeof(msg), "The model '%.120s' does not exist", url + 11);
        return send_error(S, c, MHD_HTTP_NOT_FOUND, msg, "invalid_request_error", "model", "model_not_found");
    }
    if (!strcmp(url, "/v1/chat/completions") && post) return handle_job(S, c, rq, REQ_CHAT);
    if (!strcmp(url, "/v1/completions") && post) return handle_job(S, c, rq, REQ_COMPLETION);
    if (!strcmp(url, "/v1/embeddings") && post) return handle_job(S, c, rq, REQ_EMBEDDING);
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11) || !strcmp(url, "/v1/chat/completions") ||
        !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/embeddings"))
        return send_error(S, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "invalid_request_error", NULL, NULL);
    return send_error(S, c, MHD_HTTP_NOT_FOUND, "unknown path", "invalid_request_error", NULL, "not_found");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    request *rq = *con_cls;
    conn_state(cls, c, CONN_WAITING);   // a kept-alive connection now waits for its next request
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

// The bytes each token adds to the text (control tokens: their text, for tool-call markers).
static void grammar_vocab_init(qt_grammar_vocab *v, const qt_model *m) {
    int n = m->cfg.n_vocab;
    v->n_vocab = n;
    v->piece = qt_calloc((size_t)n, sizeof(char *));
    v->len = qt_calloc((size_t)n, sizeof(uint32_t));
    v->eog = qt_calloc((size_t)n, sizeof(bool));
    for (int i = 0; i < n && i < qt_tokenizer_n_vocab(m->tok); i++) {
        v->eog[i] = qt_tokenizer_is_eog(m->tok, i);
        size_t len = 0;
        const char *p = qt_token_type(m->tok, i) == 3 ? qt_token_text(m->tok, i) : qt_token_to_piece(m->tok, i, false, &len);
        if (qt_token_type(m->tok, i) == 3 && p) len = strlen(p);
        v->piece[i] = p ? p : "";
        v->len[i] = p ? (uint32_t)len : 0;
    }
}

static void grammar_vocab_free(qt_grammar_vocab *v) {
    qt_free(v->piece);
    qt_free(v->len);
    qt_free(v->eog);
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
    S->api = (qt_api_ctx){ .m = m, .tmpl = tmpl, .o = &S->o, .n_ctx = ctx->n_ctx };
    grammar_vocab_init(&S->gvocab, m);
    atomic_init(&S->next_id, 1);
    qt_session_init(&S->sess, ctx);
    pthread_mutex_init(&S->qmu, NULL);
    pthread_cond_init(&S->qcv, NULL);
    pthread_mutex_init(&S->cmu, NULL);
    pthread_cond_init(&S->wcv, NULL);

    // SIGINT / SIGTERM are taken by sigwait below: block them in every thread we start
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    int rc = QT_ERR;
    pthread_t worker, watchdog;
    bool have_worker = pthread_create(&worker, NULL, scheduler_main, S) == 0;
    bool have_watchdog = have_worker && pthread_create(&watchdog, NULL, watchdog_main, S) == 0;
    struct MHD_Daemon *d = NULL;
    // poll(), not select(): connection sockets may be numbered past FD_SETSIZE
    if (have_watchdog)
        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, handle, S,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_connections_per_ip,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(o->idle_timeout + o->request_timeout),
                             MHD_OPTION_NOTIFY_COMPLETED, completed, S,
                             MHD_OPTION_NOTIFY_CONNECTION, notify_connection, S,
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
    // stop the scheduler first: pending jobs finish (cancelled ones are skipped) so blocked handlers return
    pthread_mutex_lock(&S->qmu);
    S->stopping = true;
    pthread_cond_broadcast(&S->qcv);
    pthread_mutex_unlock(&S->qmu);
    if (have_worker) pthread_join(worker, NULL);
    if (d) MHD_stop_daemon(d);
    if (have_watchdog) {
        pthread_mutex_lock(&S->cmu);
        S->watchdog_stop = true;
        pthread_cond_broadcast(&S->wcv);
        pthread_mutex_unlock(&S->cmu);
        pthread_join(watchdog, NULL);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    qt_session_free(&S->sess);
    grammar_vocab_free(&S->gvocab);
    pthread_mutex_destroy(&S->qmu);
    pthread_cond_destroy(&S->qcv);
    pthread_mutex_destroy(&S->cmu);
    pthread_cond_destroy(&S->wcv);
    qt_free(S);
    return rc;
}
