// gen.h: text generation over a reusable KV cache, shared by `qtune chat`
// and `qtune serve`: a session remembers which tokens its context holds, so a
// new prompt that starts like the last one only evaluates what differs; a
// generation loop with token budget, stop strings, end-of-turn tokens and a
// streaming callback.
#ifndef QT_GEN_H
#define QT_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "model/context.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/chat-template.h"

// The model's Jinja chat template: tokenizer.chat_template from the GGUF, or
// "chat_template" of tokenizer_config.json in a Hugging Face folder (a string,
// or the entry named "default" of a list). malloc'd, NULL if none.
char *qt_model_chat_template(const qt_model *m);
// A named variant ("tool_use"): tokenizer.chat_template.NAME in a GGUF (as
// llama.cpp's converter stores them), or the list entry of that name. NULL if none.
char *qt_model_chat_template_named(const qt_model *m, const char *name);

// The template for a model: --chat-template-file FILE (file), else
// --chat-template NAME (override_name), else its own. QT_ERR logged.
int qt_model_template_init(qt_chat_template *t, const qt_model *m, const char *override_name, const char *file);

// Render a conversation (JSON messages, tools and documents as
// qt_chat_template_render takes them) with t for model m (bos/eos texts from
// its vocabulary) and tokenize it with special tokens parsed. BOS as
// llama-server: when the vocabulary adds BOS and the text does not start with
// it, one is put first. *out malloc'd; *text_out (may be NULL) gets the
// rendered text (malloc'd). Returns the token count or QT_ERR (logged, or
// written to err when err != NULL).
int qt_chat_tokenize_json(const qt_model *m, const qt_chat_template *t, const cJSON *messages, const cJSON *tools,
                          const cJSON *documents, bool add_generation_prompt, int32_t **out, char **text_out, char *err,
                          size_t err_cap);
// The same for plain {role, content} messages.
int qt_chat_tokenize(const qt_model *m, const qt_chat_template *t, const qt_chat_msg *msgs, int n,
                     bool add_generation_prompt, int32_t **out, char **text_out, char *err, size_t err_cap);

// Tokenize len bytes of text (err as above). *out malloc'd.
int qt_text_tokenize(const qt_tokenizer *tk, const char *text, size_t len, bool add_bos, bool parse_special,
                     int32_t **out);

typedef struct {
    qt_ctx *ctx;       // borrowed
    int32_t *toks;     // the tokens in the cache, positions 0 .. ctx->n_past-1
    int cap;
} qt_session;

void qt_session_init(qt_session *s, qt_ctx *ctx);
void qt_session_free(qt_session *s);
void qt_session_reset(qt_session *s);   // empty the cache
// Bring the cache to hold exactly prompt[0..n): keep the common prefix with what
// it holds, drop the rest (qt_ctx_truncate), evaluate the remainder (at least
// the last token, whose logits are returned). *n_reused (may be NULL) gets the
// positions kept. NULL (logged) when the prompt does not fit the context.
const float *qt_session_prefill(qt_session *s, const int32_t *prompt, int n, int *n_reused);
// Evaluate one more token. NULL when the context is full.
const float *qt_session_push(qt_session *s, int32_t tok);

// Streaming callback: len bytes of new text. Return false to stop (client gone).
typedef bool (*qt_gen_text_fn)(const char *text, size_t len, void *ud);

// Per-token hooks (all optional). before_sample runs before each draw and
// returns QT_GEN_GO, or QT_GEN_STOP (finish "stop") / QT_GEN_ABORT (finish
// "abort", the client is gone). A constraint (grammar) gives allows and mask:
// a token drawn without the constraint is kept when allows(id); otherwise the
// logits are masked and the token drawn again (llama.cpp's order: the full
// mask only when the cheap check fails). on_token sees each output token with
// the model's raw logits it was drawn from (logprobs, grammar state); false aborts.
enum { QT_GEN_GO = 0, QT_GEN_STOP = 1, QT_GEN_ABORT = 2 };
typedef struct {
    int (*before_sample)(void *ud);
    bool (*allows)(void *ud, int32_t id);
    void (*mask)(void *ud, float *logits);
    bool (*on_token)(void *ud, int32_t id, const float *raw_logits);
    void *ud;
} qt_gen_hooks;

typedef struct {
    int max_tokens;              // budget of generated tokens
    const char *const *stops;    // texts that end generation (not included in the output), or NULL
    int n_stops;
    bool ignore_eos;
    bool special_text;           // control tokens (not end-of-generation ones) add their text to the output
    const qt_gen_hooks *hooks;   // or NULL
} qt_gen_params;

typedef struct {
    char *text;                  // generated text (malloc'd), without the stop string
    size_t len;
    int n_prompt;                // prompt tokens
    int n_reused;                // prompt tokens found in the cache (not evaluated)
    int n_gen;                   // generated tokens (the end-of-turn token not counted)
    const char *finish;          // "stop" (end of turn / stop string), "length" (budget or context), "abort"
    double t_prompt, t_gen;      // seconds
} qt_gen_result;

// The generation loop one token at a time, for callers that evaluate the
// tokens themselves (the server's batched scheduler). qt_gen_begin feeds the
// prompt to the sampler; each qt_gen_next takes the logits of the last
// evaluated token, samples, applies stops, hooks and the budget, streams text
// to cb, and returns true with *next to evaluate (then call it again with the
// new logits), or false when the generation is over. qt_gen_end flushes the
// text and fills the result (n_prompt, n_reused and t_prompt are the
// caller's; a caller that cannot evaluate *next ends with "length").
typedef struct {
    const qt_tokenizer *tk;
    qt_sampler *smp;
    const qt_gen_params *p;
    qt_gen_text_fn cb;
    void *ud;
    int n_vocab;
    int i;                       // tokens sampled
    int n_gen;
    float *lg;                   // (n_vocab) the logits a draw works on
    char *text;
    size_t len, cap, sent;
    qt_detok dt;
    bool stopped, aborted;
    double t0;
} qt_gen;

void qt_gen_begin(qt_gen *g, const qt_tokenizer *tk, int n_vocab, qt_sampler *smp, const int32_t *prompt, int n_prompt,
                  const qt_gen_params *p, qt_gen_text_fn cb, void *ud);
bool qt_gen_next(qt_gen *g, const float *logits, int32_t *next);
// Fills res->text, len, n_gen, finish, t_gen (res's other fields are kept); frees g's buffers.
void qt_gen_end(qt_gen *g, qt_gen_result *res);

// Prefill the prompt, then sample up to p->max_tokens tokens. Stops at an
// end-of-generation token, a token whose vocabulary text is a stop string
// (control tokens such as <|im_end|>), or when the text reaches a stop string.
// Text goes to cb (if not NULL) as it becomes final (text that could still
// turn into a stop string is held back). QT_OK or QT_ERR (prompt too long, logged).
int qt_generate(qt_session *s, const qt_tokenizer *tk, qt_sampler *smp, const int32_t *prompt, int n_prompt,
                const qt_gen_params *p, qt_gen_text_fn cb, void *ud, qt_gen_result *res);
void qt_gen_result_free(qt_gen_result *r);

#endif
