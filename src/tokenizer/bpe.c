// bpe.c: rank-based BPE: the merges list, GPT-2's byte <-> unicode mapping,
// and the encoding of one fragment of text.
//
// Implements: merges "a b" -> rank (the line number), kept as a hash of
// (left id, right id) -> (rank, merged id); encoding as llama.cpp's
// llm_tokenizer_bpe_session (src/llama-vocab.cpp) and Hugging Face
// tokenizers' BPE model: pre-tokenize into words, start from one symbol per
// byte (byte-level) or per UTF-8 character (char-level), then repeatedly apply
// the lowest-ranked merge among adjacent pairs (ties: leftmost) with a binary
// heap, O(n log n). Byte-level text is mapped through GPT-2's bytes_to_unicode
// (openai/gpt-2 encoder.py). Char-level (SentencePiece converted to
// tokenizer.json): spaces become U+2581, a U+2581 is prepended, and symbols
// that are not tokens fall back to <0xNN> byte tokens or the unknown token.
//
// Deliberately not here: BPE dropout, continuing_subword_prefix /
// end_of_word_suffix (WordPiece-style BPE), merges whose parts or result are
// not vocabulary tokens (skipped: no real vocabulary has them).
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tokenizer/tokenizer-impl.h"

// ---- GPT-2 bytes_to_unicode ----

static bool printable_byte(int b) { return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae); }

// The 68 others, in byte order, take 256, 257, ...: 0x00-0x20, 0x7f-0xa0, 0xad.
uint32_t qt_bpe_byte_to_cp(uint8_t b) {
    if (printable_byte(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7f && b <= 0xa0) return 256u + 33 + (b - 0x7fu);
    return 256u + 67;   // 0xad
}

int qt_bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) return printable_byte((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    if (k < 33) return (int)k;
    if (k < 67) return (int)(0x7f + k - 33);
    return 0xad;
}

static size_t put_utf8(uint32_t cp, char *p) {
    if (cp < 0x80) { p[0] = (char)cp; return 1; }
    if (cp < 0x800) { p[0] = (char)(0xc0 | (cp >> 6)); p[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    p[0] = (char)(0xe0 | (cp >> 12));
    p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    p[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

void qt_bpe_byte_level_init(qt_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char buf[4];
        size_t l = put_utf8(qt_bpe_byte_to_cp((uint8_t)b), buf);
        t->bl_id[b] = qt_tok_lookup(t, buf, l);
    }
}

size_t qt_bpe_decode_text(const char *s, size_t len, char *p) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t c = (uint8_t)s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (l > len - i) l = len - i;
        uint32_t cp = c;
        if (l == 2) cp = ((uint32_t)(c & 0x1f) << 6) | ((uint8_t)s[i + 1] & 0x3f);
        int b = l <= 2 ? qt_bpe_cp_to_byte(cp) : -1;
        if (b >= 0) p[n++] = (char)b;
        else { memcpy(p + n, s + i, l); n += l; }   // not in the map: kept as is
        i += l;
    }
    return n;
}

// ---- merges ----

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

void qt_bpe_merges_init(qt_tokenizer *t, int n_max) {
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)n_max) cap *= 2;
    t->merge_key = qt_malloc(cap * sizeof(uint64_t));
    memset(t->merge_key, 0xff, cap * sizeof(uint64_t));
    t->merge_rank = qt_malloc(cap * sizeof(int32_t));
    t->merge_out = qt_malloc(cap * sizeof(int32_t));
    t->merge_mask = cap - 1;
    t->n_merges = 0;
}

// slot of key, or the empty slot where it would go
static uint32_t merge_slot(const qt_tokenizer *t, uint64_t key) {
    uint32_t i = (uint32_t)mix64(key) & t->merge_mask;
    while (t->merge_key[i] != UINT64_MAX && t->merge_key[i] != key) i = (i + 1) & t->merge_mask;
    return i;
}

int qt_bpe_merge_add(qt_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    int rank = t->n_merges++;   // ranks count every line, as llama.cpp's bpe_ranks
    int ia = qt_tok_lookup(t, a, na), ib = qt_tok_lookup(t, b, nb);
    if (ia < 0 || ib < 0 || na + nb > 65536) return QT_ERR;
    char stack[256];
    char *cat = na + nb <= sizeof(stack) ? stack : qt_malloc(na + nb);
    memcpy(cat, a, na);
    memcpy(cat + na, b, nb);
    int io = qt_tok_lookup(t, cat, na + nb);
    if (cat != stack) qt_free(cat);
    if (io < 0) return QT_ERR;
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t s = merge_slot(t, key);
    if (t->merge_key[s] == key) return QT_OK;   // a repeated pair keeps its first rank
    t->merge_key[s] = key;
    t->merge_rank[s] = rank;
    t->merge_out[s] = io;
    return QT_OK;
}

void qt_bpe_free(qt_tokenizer *t) {
    qt_free(t->merge_key);
    qt_free(t->merge_rank);
    qt_free(t->merge_out);
}

// ---- encoding ----

typedef struct {
    int32_t id;          // token id of the symbol; -1: not a token
    int32_t start, n;    // bytes; n == 0: merged away
    int32_t prev, next;
} symbol;

typedef struct {
    int32_t rank, left, right, size, out;
} bigram;

static bool bigram_before(const bigram *a, const bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct {
    const qt_tokenizer *t;
    symbol *sym;
    size_t sym_cap;
    bigram *heap;
    size_t n_heap, heap_cap;
} session;

static void heap_push(session *s, bigram b) {
    if (s->n_heap == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 64;
        s->heap = qt_realloc(s->heap, s->heap_cap * sizeof(bigram));
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
}

static bigram heap_pop(session *s) {
    bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap) break;
        if (c + 1 < s->n_heap && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap > 0) s->heap[i] = last;
    return top;
}

static void try_pair(session *s, int left, int right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &s->sym[left], *r = &s->sym[right];
    if (l->id < 0 || r->id < 0) return;
    uint64_t key = (uint64_t)(uint32_t)l->id << 32 | (uint32_t)r->id;
    uint32_t k = merge_slot(s->t, key);
    if (s->t->merge_key[k] != key) return;
    heap_push(s, (bigram){ s->t->merge_rank[k], left, right, l->n + r->n, s->t->merge_out[k] });
}

// Emits the tokens of a symbol that is not a token.
static void emit_fallback(const qt_tokenizer *t, const char *text, const symbol *sy, qt_tok_sink *out) {
    if (!t->byte_level) {
        bool all = true;
        for (int j = 0; j < sy->n; j++) all &= t->byte_id[(uint8_t)text[sy->start + j]] >= 0;
        if (all) {
            for (int j = 0; j < sy->n; j++) qt_tok_emit(out, t->byte_id[(uint8_t)text[sy->start + j]]);
            return;
        }
    }
    if (t->unk >= 0) qt_tok_emit(out, t->unk);
    // else dropped, as llama.cpp does for a byte-level symbol without a token
}

// One word: text[0..n) (already escaped for char-level).
static void encode_word(session *s, const char *text, size_t n, qt_tok_sink *out) {
    const qt_tokenizer *t = s->t;
    if (n == 0) return;
    if (t->ignore_merges) {
        int id = qt_tok_lookup(t, text, n);
        if (id >= 0) { qt_tok_emit(out, id); return; }
    }
    if (n > s->sym_cap) {
        s->sym_cap = n;
        s->sym = qt_realloc(s->sym, n * sizeof(symbol));
    }
    int n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t l = 1;
        int id;
        if (t->byte_level) {
            id = t->bl_id[(uint8_t)text[off]];
        } else {
            uint8_t c = (uint8_t)text[off];
            l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
            if (l > n - off) l = n - off;
            id = qt_tok_lookup(t, text + off, l);
        }
        s->sym[n_sym] = (symbol){ id, (int32_t)off, (int32_t)l, n_sym - 1, off + l == n ? -1 : n_sym + 1 };
        off += l;
        n_sym++;
    }
    s->n_heap = 0;
    for (int i = 1; i < n_sym; i++) try_pair(s, i - 1, i);
    while (s->n_heap > 0) {
        bigram b = heap_pop(s);
        symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        // stale: one side changed since this pair was queued
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = b.out;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        try_pair(s, l->prev, b.left);
        try_pair(s, b.left, l->next);
    }
    for (int i = 0; i != -1; i = s->sym[i].next) {
        const symbol *sy = &s->sym[i];
        if (sy->id >= 0) qt_tok_emit(out, sy->id);
        else emit_fallback(t, text, sy, out);
    }
}

int qt_bpe_encode_fragment(const qt_tokenizer *t, const char *text, size_t n, bool prefix, qt_tok_sink *out) {
    session s = { t, NULL, 0, NULL, 0, 0 };
    char *buf = NULL;
    if (t->byte_level) {
        if (t->prefix_space && n > 0 && text[0] != ' ') {
            buf = qt_malloc(n + 1);
            buf[0] = ' ';
            memcpy(buf + 1, text, n);
            text = buf;
            n++;
        }
        uint32_t small[256];
        int n_words = qt_pretok_split(t->pre, text, n, small, 256);
        uint32_t *ends = small;
        if (n_words > 256) {
            ends = qt_malloc((size_t)n_words * sizeof(uint32_t));
            qt_pretok_split(t->pre, text, n, ends, n_words);
        }
        uint32_t beg = 0;
        for (int w = 0; w < n_words; w++) {
            encode_word(&s, text + beg, ends[w] - beg, out);
            beg = ends[w];
        }
        if (ends != small) qt_free(ends);
    } else {
        // char-level (SentencePiece converted): spaces -> U+2581, with a leading one
        buf = qt_malloc(3 * n + 3);
        size_t m = 0;
        if (prefix) { memcpy(buf, "\xe2\x96\x81", 3); m = 3; }
        for (size_t i = 0; i < n; i++) {
            if (text[i] == ' ') { memcpy(buf + m, "\xe2\x96\x81", 3); m += 3; }
            else buf[m++] = text[i];
        }
        if (t->metaspace_split) {
            // words start at each U+2581
            size_t beg = 0;
            for (size_t i = 3; i + 3 <= m; i++)
                if (memcmp(buf + i, "\xe2\x96\x81", 3) == 0) {
                    encode_word(&s, buf + beg, i - beg, out);
                    beg = i;
                }
            encode_word(&s, buf + beg, m - beg, out);
        } else {
            // independent segments: no token spans their boundaries
            for (size_t off = 0; off < m;) {
                size_t l = qt_tok_segment(t, buf + off, m - off);
                encode_word(&s, buf + off, l, out);
                off += l;
            }
        }
    }
    qt_free(buf);
    qt_free(s.sym);
    qt_free(s.heap);
    return QT_OK;
}
