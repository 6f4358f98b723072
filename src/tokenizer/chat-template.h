// chat-template.h: chat templates. A model's own tokenizer.chat_template
// (GGUF metadata or tokenizer_config.json) or a --chat-template-file is
// compiled with the Jinja engine (template/jinja.h) and rendered as
// transformers' apply_chat_template does, tools and documents included. The
// built-in families below stay as fallbacks (--chat-template NAME, models
// without a template, training records): each is recognised by distinctive
// substrings and rendered by hand exactly as its real Jinja template renders.
#ifndef QT_CHAT_TEMPLATE_H
#define QT_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "template/jinja.h"

typedef enum {
    QT_CHAT_LLAMA2 = 0,  // meta-llama/Llama-2-*-chat-hf: <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>
    QT_CHAT_MISTRAL,     // mistralai/Mixtral-8x7B-Instruct-v0.1: <s>[INST] ... [/INST]answer</s> (no system role)
    QT_CHAT_CHATML,      // <|im_start|>role\n...<|im_end|>\n (Qwen2, SmolLM2: with their default system prompt)
    QT_CHAT_LLAMA3,      // meta-llama/Meta-Llama-3-8B-Instruct: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    QT_CHAT_ZEPHYR,      // HuggingFaceH4/zephyr-7b-beta, TinyLlama-1.1B-Chat: <|user|>\n...</s>\n
    QT_CHAT_PHI3,        // microsoft/Phi-3-mini-4k-instruct: <|user|>\n...<|end|>\n
    QT_CHAT_GEMMA,       // google/gemma-7b-it: <start_of_turn>user\n...<end_of_turn>\n (no system role)
    QT_CHAT_ALPACA,      // Alpaca multi-turn (unsloth's alpaca template): ### Instruction:\n...\n\n### Response:\n
    QT_CHAT_DIALOGPT,    // microsoft/DialoGPT-* (GPT-2's default template): each turn's text, then eos_token
    QT_CHAT_COUNT,
} qt_chat_family;

// One chat message (borrowed strings).
typedef struct {
    const char *role;      // "system", "user", "assistant"
    const char *content;   // UTF-8
} qt_chat_msg;

typedef struct {
    int family;            // qt_chat_family of the built-in renderer; with a Jinja template the family its
                           // end-of-turn markers look like (for stop strings), or -1
    char *default_system;  // system prompt the template inserts when there is none (ChatML, Alpaca), or NULL
    qt_jinja *jinja;       // the compiled Jinja template, or NULL (the family renderer)
    char *origin;          // where the template came from ("the model", a file name), for messages
    char *text;            // the Jinja source when jinja != NULL
    qt_jinja *jinja_tools; // the template's "tool_use" variant (rendered when a request has tools), or NULL
    char *text_tools;      // its source
} qt_chat_template;

// Family names: "llama2", "mistral", "chatml", "llama3", "zephyr", "phi3",
// "gemma", "alpaca", "dialogpt" (also a few aliases: "llama-2", "qwen2",
// "smollm", "llama-3", "phi-3", "tinyllama", "gpt2"). -1 for an unknown name.
int qt_chat_family_from_name(const char *name);
const char *qt_chat_family_name(int family);
// The list of names for messages ("llama2, mistral, ...").
const char *qt_chat_family_list(void);

// Recognise the family of a Jinja template text: -1 when none matches. For
// ChatML and Alpaca the template's default system prompt (if any) is taken
// into *default_system (malloc'd, may be NULL); default_system may be NULL.
int qt_chat_family_detect(const char *jinja, char **default_system);

// Fill t from a Jinja template text (jinja may be NULL) and/or an override
// name (NULL: none). The override wins (a built-in family; with a ChatML alias
// such as "qwen2" or "smollm" that model's default system prompt). Otherwise
// the template is compiled with the Jinja engine; one it cannot compile
// falls back to its recognised family with a warning. QT_OK, or QT_ERR logged:
// unknown name, no template and no override, a template that neither compiles
// nor belongs to a family.
int qt_chat_template_init(qt_chat_template *t, const char *jinja, const char *override_name);
// Fill t from a file: a Jinja template, or a tokenizer_config.json whose
// "chat_template" is used. QT_ERR logged with the file and line at fault.
int qt_chat_template_init_file(qt_chat_template *t, const char *path);
// Add the "tool_use" variant of a model's template (a list of named templates
// in tokenizer_config.json, tokenizer.chat_template.tool_use in a GGUF). One
// that does not compile is left out with a warning.
void qt_chat_template_add_tool_use(qt_chat_template *t, const char *jinja);
void qt_chat_template_free(qt_chat_template *t);

// Render a conversation given as JSON the way transformers takes it:
// messages [{"role", "content", "tool_calls", "tool_call_id", "name"}, ...],
// tools (the OpenAI "tools" array) and documents (RAG documents), both NULL
// when absent (the template then sees None). bos, eos: the token texts.
// Returns the malloc'd text (*len_out its length, may be NULL), or NULL with
// the reason in err: the template raised (its message), or the built-in
// family cannot express the conversation (tool calls, tools, documents,
// roles it refuses).
char *qt_chat_template_render(const qt_chat_template *t, const cJSON *messages, const cJSON *tools,
                              const cJSON *documents, const char *bos, const char *eos, bool add_generation_prompt,
                              size_t *len_out, char *err, size_t err_cap);
// A description of t for logs: "jinja (the model's)" or the family name.
const char *qt_chat_template_describe(const qt_chat_template *t, char *buf, size_t cap);

// A byte range of a render.
typedef struct {
    size_t off, len;
} qt_chat_span;

// Render a conversation as the family's template does. bos, eos: the texts of
// bos_token / eos_token ("<s>", "</s>"; "" or NULL when the model has none).
// add_generation_prompt: end with the assistant header so the model answers.
// Returns the malloc'd text, *len_out its length (may be NULL). When spans is
// not NULL, *spans (malloc'd) gets the byte ranges of each assistant answer
// (its content and the end-of-turn marker that closes it: what training on
// completions learns) and *n_spans their count. NULL on error with the reason
// in err (roles the template refuses: a system message for Gemma or Mistral,
// turns that do not alternate where the template demands it).
char *qt_chat_render_family(const qt_chat_template *t, const qt_chat_msg *msgs, int n, const char *bos,
                            const char *eos, bool add_generation_prompt, size_t *len_out, qt_chat_span **spans,
                            int *n_spans, char *err, size_t err_cap);

// Texts that end an assistant turn in this family (beyond the tokenizer's
// end-of-generation ids): NULL-terminated, static. Generation stops when the
// sampled token's text or the generated text reaches one of them.
const char *const *qt_chat_family_stops(int family);
// The same for a template: its family's, or for a Jinja template the family
// whose end-of-turn marker it writes (none: only the tokenizer's end tokens).
const char *const *qt_chat_template_stops(const qt_chat_template *t);

#endif
