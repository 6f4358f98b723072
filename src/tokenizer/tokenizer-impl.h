// tokenizer-impl.h: the tokenizer's internal layout, shared by the files of
// src/tokenizer/ only (tokenizer.c: vocabulary, GGUF loading, SPM, special
// tokens, detokenizer; bpe.c: merge ranks and byte-level BPE; pretok.c:
// pre-tokenizer splits; tokenizer-json.c: Hugging Face tokenizer.json).
// Nothing outside src/tokenizer/ includes this file.
#ifndef QT_TOKENIZER_IMPL_H
#define QT_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

enum {
    TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3,
    TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6,
};

// How fragments between special tokens are encoded.
typedef enum {
    TOK_SPM = 0,      // SentencePiece: merge by the score of the merged token
    TOK_BPE = 1,      // merge by rank (merges list); byte-level or char-level
} tok_kind;

typedef struct {
    size_t text_off;     // into t->text (NUL-terminated)
    size_t piece_off;    // into t->pieces: the decoded bytes
    uint32_t text_len;
    uint32_t piece_len;
    float score;
    uint8_t type;
    uint8_t is_eog;
} tok_entry;

struct qt_tokenizer {
    int n_vocab;
    tok_entry *toks;        // (n_vocab)
    char *text;             // token texts, each NUL-terminated
    char *pieces;           // decoded pieces, each NUL-terminated
    int32_t *table;         // open-addressing hash text -> id; -1 empty
    uint32_t table_mask;
    int32_t byte_id[256];   // byte fallback token <0xNN> for each byte; -1 none
    int32_t *special;       // (n_special) ids of control/user-defined/unknown tokens, longest text first
    int n_special;
    int bos, eos, unk, pad, eot, eom;  // -1 if none
    bool add_bos, add_eos, add_space_prefix;

    tok_kind kind;
    // BPE only
    bool byte_level;        // GPT-2 byte <-> unicode mapping; else characters with byte fallback
    bool ignore_merges;     // a whole word that is a token is taken as is (Llama 3)
    bool prefix_space;      // HF ByteLevel add_prefix_space: a space before each fragment
    bool metaspace_split;   // HF Metaspace split: words start at each U+2581
    int pre;                // qt_pretok (byte-level only)
    int32_t bl_id[256];     // byte-level: token of the mapped character of each byte; -1 none
    uint64_t *merge_key;    // open addressing: (left id << 32 | right id); UINT64_MAX empty
    int32_t *merge_rank;    // rank of the merge (its line in the merges list)
    int32_t *merge_out;     // id of the merged token
    uint32_t merge_mask;
    int n_merges;
    // adjacent character pairs that occur inside some token text (chars packed
    // as their UTF-8 bytes): a boundary between any other pair is never merged
    // across, so long texts are encoded in independent segments
    uint64_t *pair_key;     // open addressing; 0 empty
    uint32_t pair_mask;
};

// ---- tokenizer.c ----
// Builds the vocabulary part of a tokenizer from n token texts (texts[i] may
// be NULL for a hole: an empty unused token), scores (NULL: all 0) and types
// (NULL: all normal). kind/byte_level must be set on t before: they decide
// how pieces are decoded. path names the source in errors. QT_OK or QT_ERR.
int qt_tok_build_vocab(qt_tokenizer *t, const char *path, int n, const char *const *texts, const uint32_t *lens,
                       const float *scores, const int32_t *types);
// Marks end-of-generation tokens (eos, eot, eom and known texts). Call last.
void qt_tok_finish(qt_tokenizer *t);
int qt_tok_lookup(const qt_tokenizer *t, const char *s, size_t n);
// Length of the segment starting at text[0] whose symbols may merge with each
// other: it ends before the first pair of adjacent characters that no token
// contains. n > 0; returns 1..n.
size_t qt_tok_segment(const qt_tokenizer *t, const char *text, size_t n);

typedef struct {
    int32_t *out;
    int cap;
    int64_t n;
} qt_tok_sink;
void qt_tok_emit(qt_tok_sink *s, int id);

// ---- bpe.c ----
// GPT-2's byte -> code point map (bytes that are printable stay, others move to 256+).
uint32_t qt_bpe_byte_to_cp(uint8_t b);
// Code point -> byte, or -1 when cp is not in the map.
int qt_bpe_cp_to_byte(uint32_t cp);
// Adds merges "a b" (or pairs a, b) in rank order; pairs whose parts or
// concatenation are not tokens are skipped. QT_OK or QT_ERR (logged).
void qt_bpe_merges_init(qt_tokenizer *t, int n_max);
int qt_bpe_merge_add(qt_tokenizer *t, const char *a, size_t na, const char *b, size_t nb);
// Fills bl_id from the vocabulary.
void qt_bpe_byte_level_init(qt_tokenizer *t);
// Decoded bytes of a byte-level token text into p (at most len bytes); returns the count.
size_t qt_bpe_decode_text(const char *s, size_t len, char *p);
// Encodes one fragment (text between special tokens). prefix: the fragment
// starts the text or follows a special token (char-level: add U+2581).
int qt_bpe_encode_fragment(const qt_tokenizer *t, const char *text, size_t n, bool prefix, qt_tok_sink *out);
void qt_bpe_free(qt_tokenizer *t);

#endif
