// dataset.h: training data for `qtune train` / `qtune eval`: JSONL records ->
// token ids with a per-token training mask, the mlx-lm folder layout, and a
// deterministic, resumable length-bucketing batcher.
#ifndef QT_DATASET_H
#define QT_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/chat-template.h"   // qt_chat_msg
#include "tokenizer/tokenizer.h"

typedef struct {
    int max_seq_len;        // records longer than this (in tokens) are truncated and counted (default 2048)
    bool mask_prompt;       // train on completions / assistant turns only
    bool skip_bad_lines;    // report and skip malformed lines instead of failing
    const char *chat_template; // NULL or "llama2": the Llama-2 "[INST]" template below; or a family name of
                               // tokenizer/chat-template.h ("chatml", "llama3", "zephyr", "phi3", "gemma",
                               // "mistral", "alpaca", "qwen2", "smollm2"), rendered by qt_chat_render_family
    bool add_eos;           // append EOS to each "text" / "prompt" record unless it already ends with EOS (default true)
    bool parse_special;     // "text", "prompt", "completion": read "<s>", "</s>", ... in the text as the
                            // special tokens (default false: plain text). Never applies to "messages" content.
    const char *response_template; // "text" records: the answer starts after the last occurrence of this text
                            // (TRL's response_template, e.g. "[/INST]"); only the answer is trained. A text
                            // record without it is a bad line. NULL: the whole text (with mask_prompt: an error).
} qt_data_opts;
qt_data_opts qt_data_defaults(void);

typedef struct {
    int32_t *tokens;   // (len) the record's tokens, BOS first when the tokenizer adds BOS
    uint8_t *train;    // (len) 1 where tokens[i] is a training target (predicted from tokens[..i-1]); train[0] = 0
    int len;
} qt_example;

typedef struct qt_dataset qt_dataset;
// Load one JSONL file. Each line is one JSON object of one of these forms
// (detected per line; mixing forms in one file is an error naming the line):
//   {"text": "..."}  (all tokens trained)
//   {"prompt": "...", "completion": "..."}  (prompt + completion concatenated as
//       they are; mask_prompt -> only completion tokens (and EOS) trained)
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//       rendered with the Llama-2 template (meta-llama/Llama-2-*-chat-hf
//       tokenizer_config.json): an optional system message first, then user and
//       assistant alternating, user first; contents are stripped of surrounding
//       whitespace, the system text is not:
//       "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user2} [/INST] {assistant2} </s>"
//       mask_prompt -> only assistant tokens (the " {assistant} " text and its </s>) trained.
//   With another chat_template the conversation is rendered by that family's
//   renderer (tokenizer/chat-template.h, as the real Jinja template renders it,
//   bos_token / eos_token the vocabulary's BOS / EOS texts) and the text is
//   tokenized with special-token parsing, as Hugging Face's apply_chat_template
//   does; mask_prompt -> each assistant content and its end-of-turn marker trained.
//   Blank lines are skipped; other keys in a record are ignored. The template's
//   <s>, </s> are emitted as the BOS/EOS ids, never parsed from user text.
//   A token that straddles a prompt/answer boundary belongs to the answer.
// NULL on error, logged as "<file>:<line>: <what is wrong>". With
// skip_bad_lines: warn per bad line, continue, count them (an I/O error or an
// unsupported chat template still fails). Records longer than max_seq_len are
// cut to max_seq_len tokens and counted; a record left with no trainable token
// is a bad line. The dataset owns all memory; examples live until qt_dataset_free.
qt_dataset *qt_dataset_load(const char *path, const qt_tokenizer *tok, const qt_data_opts *opts);
void qt_dataset_free(qt_dataset *d);   // NULL is a no-op
int qt_dataset_n(const qt_dataset *d);
const qt_example *qt_dataset_get(const qt_dataset *d, int i);
int qt_dataset_n_truncated(const qt_dataset *d);
int qt_dataset_n_skipped(const qt_dataset *d);
int64_t qt_dataset_n_tokens(const qt_dataset *d);
int64_t qt_dataset_n_train_tokens(const qt_dataset *d);
int qt_dataset_max_len(const qt_dataset *d);     // longest example, in tokens
// The source line of example i (1-based), for messages about a record.
int qt_dataset_line(const qt_dataset *d, int i);

// The answer of a "text" record: the offset just after the last occurrence of
// marker in text, or -1 when it does not occur.
long qt_data_answer_start(const char *text, const char *marker);

// Render a conversation as text with the template, the <s>, </s> written out as
// text: for display and tests. malloc'd (caller frees); NULL (logged, without a
// file:line) when the roles do not fit the template or the template is unknown.
char *qt_chat_render(const char *chat_template, const qt_chat_msg *msgs, int n);

// Tokens and training mask of one conversation as qt_dataset_load makes them
// (no truncation). *tokens, *train malloc'd (caller frees); returns the length,
// or QT_ERR (logged without a file:line).
int qt_chat_encode(const qt_tokenizer *tok, const char *chat_template, const qt_chat_msg *msgs, int n,
                   bool mask_prompt, int32_t **tokens, uint8_t **train);

// Resolve a --data argument: a folder with train.jsonl / valid.jsonl / test.jsonl
// (train required, valid and test optional; mlx-lm's layout), or a single file
// (train only). Paths are malloc'd (caller frees), NULL when absent. Any of the
// out pointers may be NULL. QT_OK, or QT_ERR logged (missing path, no train.jsonl).
int qt_data_find_splits(const char *data, char **train, char **valid, char **test);

// Batches without wasted padding: length bucketing. Each epoch the examples are
// shuffled deterministically from (seed, epoch), then cut into windows of
// 50*batch_size, each window sorted by length and cut into batches, and the
// batch order shuffled, so padding stays small. Unshuffled (for evaluation):
// the same bucketing of the examples in file order, and one fixed batch order
// (from seed, the same every epoch) so that the first k batches sample the whole
// file, not its shortest records; the short batch comes last. Each epoch holds every
// example exactly once, in ceil(n / batch_size) batches: all full but one when n
// is not a multiple of batch_size (the last one unshuffled; one somewhere in a
// shuffled epoch). Epochs follow each other without end.
// Deterministic: same seed, same sequence of batches; resumable:
// qt_batcher_seek(b, step) puts it exactly where an uninterrupted run would be
// after `step` batches. The dataset must outlive the batcher.
typedef struct qt_batcher qt_batcher;
qt_batcher *qt_batcher_init(const qt_dataset *d, int batch_size, uint64_t seed, bool shuffle);
void qt_batcher_free(qt_batcher *b);   // NULL is a no-op
// Next batch: writes n example indices (n <= batch_size) to idx (capacity
// batch_size) and returns n.
int qt_batcher_next(qt_batcher *b, int *idx);
void qt_batcher_seek(qt_batcher *b, int64_t step);
int qt_batcher_n_per_epoch(const qt_batcher *b);   // batches per epoch
int64_t qt_batcher_step(const qt_batcher *b);      // batches handed out so far (after seek: step)

#endif
