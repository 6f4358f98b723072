// tokenizer.h: text <-> token ids.
// Vocabularies: SentencePiece BPE from GGUF metadata (tokenizer.ggml.model =
// "llama": score-driven merges, byte fallback <0xNN>, the leading-space
// prefix, U+2581 for spaces, unknown token); byte-level BPE (model "gpt2":
// merge ranks, GPT-2's byte <-> unicode map, the pre-tokenizer named by
// tokenizer.ggml.pre); and Hugging Face tokenizer.json (BPE model, either
// byte-level or SentencePiece-style with byte_fallback). All behind the same
// interface.
#ifndef QT_TOKENIZER_H
#define QT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"

typedef struct qt_tokenizer qt_tokenizer;

// Build from GGUF metadata (tokenizer.ggml.*). NULL on error, logged with the
// file and the key at fault. The tokenizer copies what it needs: the gguf may
// be closed afterwards.
qt_tokenizer *qt_tokenizer_from_gguf(const qt_gguf *g);
void qt_tokenizer_free(qt_tokenizer *t);   // NULL is a no-op
// Build from a Hugging Face model folder: dir/tokenizer.json (required), and
// dir/tokenizer_config.json, dir/special_tokens_map.json when present (BOS/EOS,
// add_bos_token). dir may also name the tokenizer.json file itself. NULL on
// error, logged once with the file and the field at fault.
qt_tokenizer *qt_tokenizer_from_hf(const char *dir);
// "spm", "bpe" (byte-level) or "bpe-spm" (char-level BPE with byte fallback,
// as converted from SentencePiece), and the pre-tokenizer name ("" if none).
const char *qt_tokenizer_model_name(const qt_tokenizer *t);
const char *qt_tokenizer_pre_name(const qt_tokenizer *t);

int qt_tokenizer_n_vocab(const qt_tokenizer *t);
int qt_tokenizer_bos(const qt_tokenizer *t);      // -1 if none
int qt_tokenizer_eos(const qt_tokenizer *t);      // -1 if none
bool qt_tokenizer_add_bos(const qt_tokenizer *t); // tokenizer.ggml.add_bos_token (default true for llama)
bool qt_tokenizer_is_eog(const qt_tokenizer *t, int id);  // end of generation (eos, eot)
int qt_tokenizer_unk(const qt_tokenizer *t);      // -1 if none
int qt_tokenizer_pad(const qt_tokenizer *t);      // -1 if none
bool qt_tokenizer_add_eos(const qt_tokenizer *t); // tokenizer.ggml.add_eos_token (default false);
                                                  // qt_tokenize never appends EOS itself
bool qt_tokenizer_add_space_prefix(const qt_tokenizer *t);  // tokenizer.ggml.add_space_prefix (default true)
// Id of the token whose vocabulary text is exactly these bytes, -1 if none (hash lookup).
int qt_tokenizer_find(const qt_tokenizer *t, const char *text, size_t len);
float qt_token_score(const qt_tokenizer *t, int id);
// tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
// 5 unused, 6 byte (0 "undefined" is read as normal); -1 for an id out of range.
int qt_token_type(const qt_tokenizer *t, int id);

// Encode len bytes of text. add_bos: prepend BOS. parse_special: recognise
// control/unknown token texts ("<s>", "<|user|>") inside text; otherwise
// they are tokenized as plain text. As llama.cpp, user-defined tokens are
// recognised in both cases, and the leading-space prefix (add_space_prefix) is
// added at the start of the text and after every recognised special token. Writes at most cap ids; returns the number
// of ids the full encoding has (may exceed cap: call again with a bigger
// buffer), or QT_ERR.
int qt_tokenize(const qt_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                int32_t *out, int cap);

// The bytes a token stands for when decoded (U+2581 -> ' ', <0x0A> -> "\n",
// control tokens -> "" unless special). *len set. Valid until qt_tokenizer_free.
const char *qt_token_to_piece(const qt_tokenizer *t, int id, bool special, size_t *len);
// The token's vocabulary text as stored ("▁the", "<0x0A>").
const char *qt_token_text(const qt_tokenizer *t, int id);

// Streaming detokenizer: bytes of a UTF-8 character split across tokens are
// held back until complete; invalid sequences come out as U+FFFD.
// After BOS (or at the start), SPM drops the one leading space of the first piece.
// To decode only generated tokens that follow a prompt, set at_start = false
// after qt_detok_init (or push the prompt tokens first and discard the text).
// Ids out of range and control tokens produce nothing.
typedef struct {
    uint8_t pending[8];
    int n_pending;
    bool at_start;
} qt_detok;
void qt_detok_init(qt_detok *d);
// Appends the printable bytes of token id to out (cap bytes); returns the byte
// count written (pieces are short: cap >= 64 always suffices).
size_t qt_detok_push(qt_detok *d, const qt_tokenizer *t, int id, char *out, size_t cap);
// Flushes held-back bytes at the end of a stream (as U+FFFD if incomplete).
size_t qt_detok_flush(qt_detok *d, char *out, size_t cap);


// ---- pre-tokenizers (byte-level BPE) ----
// The word splits of llama.cpp's llm_tokenizer_bpe regex lists (one list per
// tokenizer.ggml.pre family), written as matchers over code points; Unicode
// categories come from utf8proc.
typedef enum {
    QT_PRE_DEFAULT = 0, QT_PRE_GPT2, QT_PRE_LLAMA3, QT_PRE_QWEN2, QT_PRE_DEEPSEEK_LLM,
    QT_PRE_DEEPSEEK_CODER, QT_PRE_FALCON, QT_PRE_STARCODER, QT_PRE_COUNT,
} qt_pretok;
// tokenizer.ggml.pre name -> family; -1 for a name we do not know. *ignore_merges
// and *add_bos (may be NULL) get llama.cpp's per-name defaults.
int qt_pretok_from_name(const char *name, bool *ignore_merges, bool *add_bos);
const char *qt_pretok_name(int pre);   // family name ("gpt2", "llama3", ...)
// Splits len bytes of text into words: writes the end offset of each word to
// ends (at most cap) and returns the number of words (may exceed cap). Words
// cover the text without gaps. Invalid UTF-8 bytes are single characters.
int qt_pretok_split(int pre, const char *text, size_t len, uint32_t *ends, int cap);

#endif
