// chat-template.h: chat templates without a Jinja engine. A model's
// tokenizer.chat_template (GGUF metadata or tokenizer_config.json) is
// recognised as one of a few families by distinctive substrings, and each
// family is rendered by hand exactly as its real Jinja template renders it
// (Hugging Face's apply_chat_template: trim_blocks, lstrip_blocks).
#ifndef QT_CHAT_TEMPLATE_H
#define QT_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

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
    int family;            // qt_chat_family
    char *default_system;  // system prompt the template inserts when there is none (ChatML, Alpaca), or NULL
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
// name (NULL: none). The override wins; with a name of a ChatML family alias
// ("qwen2", "smollm") the model's default system prompt is used. QT_OK, or
// QT_ERR logged: unknown name, no template and no override, or a template of
// an unrecognised family (the message lists the names for --chat-template).
int qt_chat_template_init(qt_chat_template *t, const char *jinja, const char *override_name);
void qt_chat_template_free(qt_chat_template *t);

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

#endif
