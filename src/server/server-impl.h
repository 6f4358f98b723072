// server-impl.h: what the parts of the server share. A request is parsed and
// validated into a qt_request (api.c), queued as a job, and run by the
// scheduler (server.c): one slot per choice being generated, each slot with
// its own sampler and grammar state. Responses are built by api.c; tool
// calls are parsed out of generated text by tool-calls.c.
#ifndef QT_SERVER_IMPL_H
#define QT_SERVER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "model/model.h"
#include "sample/grammar.h"
#include "sample/sampler.h"
#include "server/server.h"
#include "tokenizer/chat-template.h"

#define QT_MAX_STOPS 4        // as OpenAI's API
#define QT_MAX_N 16           // choices per request
#define QT_MAX_TOP_LOGPROBS 20
#define QT_MAX_LOGIT_BIAS 1024
#define QT_MAX_EMBED_INPUTS 256

typedef enum { REQ_CHAT, REQ_COMPLETION, REQ_EMBEDDING } req_kind;

// Tool-call text formats the server can parse (and constrain with tool_choice).
typedef enum { TOOLS_NONE = 0, TOOLS_HERMES, TOOLS_LLAMA3, TOOLS_MISTRAL, TOOLS_FUNCTIONARY, TOOLS_ANY } tool_format;

typedef struct {
    req_kind kind;
    bool stream, include_usage, echo;
    int n;                       // choices
    int max_tokens;
    qt_sampler_params sp;
    bool seed_given;
    int32_t *bias_ids;           // logit_bias
    float *bias;
    int n_bias;
    bool logprobs;               // chat: logprobs; completions: logprobs > 0 (then top_logprobs = that number)
    int top_logprobs;
    char *stops[QT_MAX_STOPS + 8];
    int n_stops;
    int32_t *prompt;             // tokens (chat: the rendered conversation)
    int n_prompt;
    char *prompt_text;           // chat: the rendered text; completions: the prompt (for echo)
    qt_grammar *grammar;         // response_format / tool_choice constraint, or NULL
    cJSON *tools;                // the request's tools (owned), or NULL
    tool_format tools_format;    // how to parse tool calls from the output (TOOLS_NONE: do not)
    bool special_text;           // keep control tokens' text in the output (tool-call markers)
    // embeddings
    int32_t **inputs;            // (n_inputs) token lists
    int *n_input;
    int n_inputs;
    bool base64;
} qt_request;

void qt_request_free(qt_request *r);

// A parse failure: HTTP status, message, parameter, code (OpenAI's error object).
typedef struct {
    int status;
    char message[512];
    const char *param;
    char param_buf[128];
    const char *code;
    const char *type;
} qt_api_error;

typedef struct {
    const qt_model *m;
    const qt_chat_template *tmpl;   // NULL: no chat template
    const qt_server_opts *o;
    int n_ctx;
    uint64_t seed_base;             // for requests without a seed
} qt_api_ctx;

// Parse and validate a request body (a JSON object). QT_OK, or QT_ERR with e filled.
int qt_api_parse(const qt_api_ctx *a, req_kind kind, const cJSON *body, qt_request *r, qt_api_error *e);

// Token text for logprobs: the bytes a token decodes to, as a JSON string (invalid UTF-8 -> U+FFFD) and bytes array.
cJSON *qt_api_token_json(const qt_model *m, int id, bool with_bytes, const char *key);

// ---- tool calls (tool-calls.c) ----
// The format a chat template writes tool calls in, from its text.
tool_format qt_tool_format_of(const qt_chat_template *t);
// Parse tool calls out of generated text. Returns a JSON array of OpenAI
// tool_calls (owned) or NULL when the text holds none; *content_len gets the
// length of the text before the first call (the message content).
cJSON *qt_tool_calls_parse(const char *text, size_t len, tool_format f, const cJSON *tools, size_t *content_len,
                           uint64_t *id_seed);
// GBNF forcing a tool call in format f: to the function named `name`, or to any of tools when name is NULL.
// NULL with err when the format cannot be constrained.
char *qt_tool_calls_gbnf(tool_format f, const cJSON *tools, const char *name, char *err, size_t err_cap);

#endif
