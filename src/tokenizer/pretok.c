// pretok.c: pre-tokenizers of byte-level BPE vocabularies: the text between
// special tokens is cut into words before any merge.
//
// Implements: the regex lists llama.cpp's llm_tokenizer_bpe keeps for each
// tokenizer.ggml.pre family (src/llama-vocab.cpp), applied as its
// unicode_regex_split does: each regex of the list splits every piece the
// previous one produced into its matches and the gaps between them (Hugging
// Face's Split pre-tokenizer with behaviour "Isolated"). Each regex is a
// hand-written matcher over code points with the semantics of a backtracking
// regex engine (leftmost match, alternatives in order, greedy quantifiers);
// \p{L}, \p{N}, \p{P} come from utf8proc's general categories and \s is
// Unicode White_Space. The reference for the splits is Python's `regex`
// module running the same expressions (tests/ref/pretok_ref.py).
//
// Deliberately not here: a regex engine, and the rarer families (tekken,
// gpt-4o, chameleon, poro/bloom, kimi-k2, ...): their names are refused.
#include "tokenizer/tokenizer.h"

#include <string.h>
#include <utf8proc.h>

#include "base/base.h"

enum { F_L = 1, F_N = 2, F_P = 4, F_WS = 8 };

typedef struct {
    const uint32_t *cp;   // code points of the whole fragment
    const uint8_t *fl;    // their F_* flags
} cps;

typedef size_t (*matcher)(const cps *c, size_t i, size_t end);

static bool is_ws_cp(uint32_t c) {
    // Unicode White_Space (PropList.txt): what \s matches in Python's regex and Oniguruma
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

static uint8_t cp_flags(uint32_t c) {
    uint8_t f = is_ws_cp(c) ? F_WS : 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return f | F_L;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return f | F_N;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return f | F_P;
    default:
        return f;
    }
}

// ---- building blocks ----

#define IS(c, i, f) (((c)->fl[i] & (f)) != 0)

static size_t run_flag(const cps *c, size_t i, size_t end, uint8_t f) {
    size_t j = i;
    while (j < end && IS(c, j, f)) j++;
    return j - i;
}

static bool is_nl(uint32_t x) { return x == '\r' || x == '\n'; }
static uint32_t lower_ascii(uint32_t x) { return x >= 'A' && x <= 'Z' ? x + 32 : x; }

// 's|'t|'re|'ve|'m|'ll|'d, case-sensitive or not
static size_t contraction(const cps *c, size_t i, size_t end, bool icase) {
    if (c->cp[i] != '\'' || i + 1 >= end) return 0;
    uint32_t a = c->cp[i + 1], b = i + 2 < end ? c->cp[i + 2] : 0;
    if (icase) { a = lower_ascii(a); b = lower_ascii(b); }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S): the whitespace run, less its last character when a non-space follows
static size_t ws_not_before_nonspace(const cps *c, size_t i, size_t end) {
    size_t r = run_flag(c, i, end, F_WS);
    if (r == 0) return 0;
    if (i + r == end) return r;
    return r >= 2 ? r - 1 : 0;
}

// "not \s, \p{L}, \p{N}"
static bool is_other(const cps *c, size_t i) { return !IS(c, i, F_WS | F_L | F_N); }

static size_t run_other(const cps *c, size_t i, size_t end) {
    size_t j = i;
    while (j < end && is_other(c, j)) j++;
    return j - i;
}

// ---- the regexes ----

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
static size_t m_gpt2(const cps *c, size_t i, size_t end) {
    size_t m = contraction(c, i, end, false);
    if (m) return m;
    size_t s = c->cp[i] == ' ' && i + 1 < end ? 1 : 0;   // optional leading space
    for (int alt = 0; alt < 3; alt++) {
        // try with the space, then without (backtracking of " ?")
        for (size_t k = s + 1; k-- > 0;) {
            size_t j = i + k, r;
            if (alt == 0) r = run_flag(c, j, end, F_L);
            else if (alt == 1) r = run_flag(c, j, end, F_N);
            else r = run_other(c, j, end);
            if (r) return k + r;
        }
    }
    return ws_not_before_nonspace(c, i, end);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
static size_t m_llama3_like(const cps *c, size_t i, size_t end, size_t max_digits) {
    size_t m = contraction(c, i, end, true);
    if (m) return m;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_nl(c->cp[i]) && !IS(c, i, F_L | F_N) && i + 1 < end && IS(c, i + 1, F_L))
        return 1 + run_flag(c, i + 1, end, F_L);
    if (IS(c, i, F_L)) return run_flag(c, i, end, F_L);
    // \p{N}{1,D}
    if (IS(c, i, F_N)) {
        size_t r = run_flag(c, i, end, F_N);
        return r < max_digits ? r : max_digits;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t k = c->cp[i] == ' ' && i + 1 < end && is_other(c, i + 1) ? 1 : 0;
    size_t r = run_other(c, i + k, end);
    if (r) {
        size_t j = i + k + r;
        while (j < end && is_nl(c->cp[j])) j++;
        return j - i;
    }
    // \s*[\r\n]+: up to the last newline of the whitespace run
    size_t w = run_flag(c, i, end, F_WS);
    for (size_t j = i + w; j-- > i;)
        if (is_nl(c->cp[j])) return j - i + 1;
    // \s+(?!\S) | \s+
    m = ws_not_before_nonspace(c, i, end);
    return m ? m : w;
}

static size_t m_llama3(const cps *c, size_t i, size_t end) { return m_llama3_like(c, i, end, 3); }
static size_t m_qwen2(const cps *c, size_t i, size_t end) { return m_llama3_like(c, i, end, 1); }

static size_t m_digit(const cps *c, size_t i, size_t end) { return IS(c, i, F_N) ? 1 : 0; }   // \p{N}
static size_t m_digits(const cps *c, size_t i, size_t end) { return run_flag(c, i, end, F_N); }  // \p{N}+

// [0-9][0-9][0-9]
static size_t m_ascii3(const cps *c, size_t i, size_t end) {
    if (i + 3 > end) return 0;
    for (size_t k = 0; k < 3; k++)
        if (c->cp[i + k] < '0' || c->cp[i + k] > '9') return 0;
    return 3;
}

// [\p{P}\$\+<=>\^~\|`]+ (falcon) and the same without the backquote (default)
static size_t run_punct(const cps *c, size_t i, size_t end, bool backquote) {
    size_t j = i;
    for (; j < end; j++) {
        uint32_t x = c->cp[j];
        if (!(IS(c, j, F_P) || x == '$' || x == '+' || x == '<' || x == '=' || x == '>' || x == '^' || x == '~' ||
              x == '|' || (backquote && x == '`')))
            break;
    }
    return j - i;
}
static size_t m_punct_falcon(const cps *c, size_t i, size_t end) { return run_punct(c, i, end, true); }
static size_t m_punct_default(const cps *c, size_t i, size_t end) { return run_punct(c, i, end, false); }

// [\r\n]
static size_t m_newline(const cps *c, size_t i, size_t end) { return is_nl(c->cp[i]) ? 1 : 0; }

// \s?X+ for a class X given as a predicate
typedef bool (*cp_pred)(const cps *c, size_t i);
static size_t ws_opt_run(const cps *c, size_t i, size_t end, cp_pred x) {
    size_t k = IS(c, i, F_WS) && i + 1 < end && x(c, i + 1) ? 1 : 0;
    size_t j = i + k;
    while (j < end && x(c, j)) j++;
    return j > i + k ? j - i : 0;
}

static bool p_letter(const cps *c, size_t i) { return IS(c, i, F_L); }
static bool p_punct(const cps *c, size_t i) { return IS(c, i, F_P); }

static bool in_ranges(uint32_t x, const uint32_t (*r)[2], size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (x < r[mid][0]) hi = mid;
        else if (x > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

// deepseek-llm's letter class [A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃] (the cased letters), as
// code point ranges, sorted
static const uint32_t DS_LETTERS[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF},
    {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D}, {0x37F, 0x37F},
    {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
    {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC},
    {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126},
    {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3},
    {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF},
    {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F},
    {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF},
    {0x1E900, 0x1E943},
};
// [!-/:-~！-／：-～‘-‟　-。]
static const uint32_t DS_PUNCT[][2] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};
// [一-龥ࠀ-一가-퟿]
static const uint32_t CJK[][2] = { {0x800, 0x4E00}, {0x4E00, 0x9FA5}, {0xAC00, 0xD7FF} };

static bool p_ds_letter(const cps *c, size_t i) { return in_ranges(c->cp[i], DS_LETTERS, QT_ARRAY_LEN(DS_LETTERS)); }
static bool p_ds_punct(const cps *c, size_t i) { return in_ranges(c->cp[i], DS_PUNCT, QT_ARRAY_LEN(DS_PUNCT)); }

static size_t m_ws_letters(const cps *c, size_t i, size_t end) { return ws_opt_run(c, i, end, p_letter); }
static size_t m_ws_punct(const cps *c, size_t i, size_t end) { return ws_opt_run(c, i, end, p_punct); }
static size_t m_ds_letters(const cps *c, size_t i, size_t end) { return ws_opt_run(c, i, end, p_ds_letter); }
static size_t m_ds_punct(const cps *c, size_t i, size_t end) { return ws_opt_run(c, i, end, p_ds_punct); }

// [一-龥ࠀ-一가-퟿]+ (the two first ranges overlap at U+4E00: one search is enough)
static size_t m_cjk(const cps *c, size_t i, size_t end) {
    size_t j = i;
    while (j < end && (in_ranges(c->cp[j], CJK, 1) || in_ranges(c->cp[j], CJK + 1, 2))) j++;
    return j - i;
}

// \s+$
static size_t m_ws_at_end(const cps *c, size_t i, size_t end) {
    size_t r = run_flag(c, i, end, F_WS);
    return r > 0 && i + r == end ? r : 0;
}

// ---- families ----

typedef struct {
    const char *name;
    matcher rules[6];
} family;

static const family FAMILIES[QT_PRE_COUNT] = {
    [QT_PRE_DEFAULT] = { "default", { m_punct_default, m_gpt2, m_digits, m_ascii3 } },
    [QT_PRE_GPT2] = { "gpt2", { m_gpt2 } },
    [QT_PRE_LLAMA3] = { "llama3", { m_llama3 } },
    [QT_PRE_QWEN2] = { "qwen2", { m_qwen2 } },
    [QT_PRE_DEEPSEEK_LLM] = { "deepseek-llm", { m_newline, m_ds_letters, m_ds_punct, m_ws_at_end, m_cjk, m_digits } },
    [QT_PRE_DEEPSEEK_CODER] = { "deepseek-coder", { m_newline, m_ws_letters, m_ws_punct, m_cjk, m_digit } },
    [QT_PRE_FALCON] = { "falcon", { m_punct_falcon, m_gpt2, m_ascii3 } },
    [QT_PRE_STARCODER] = { "starcoder", { m_digit, m_gpt2 } },
};

typedef struct {
    const char *name;
    int pre;
    bool ignore_merges, add_bos;
} pre_name;

// tokenizer.ggml.pre values, grouped as llama.cpp's llama_vocab::impl::load does
static const pre_name NAMES[] = {
    { "default", QT_PRE_DEFAULT, false, false },
    { "llama3", QT_PRE_LLAMA3, true, true }, { "llama-v3", QT_PRE_LLAMA3, true, true },
    { "llama-bpe", QT_PRE_LLAMA3, true, true }, { "falcon3", QT_PRE_LLAMA3, true, true },
    { "pixtral", QT_PRE_LLAMA3, true, true }, { "dbrx", QT_PRE_LLAMA3, false, false },
    { "smaug-bpe", QT_PRE_LLAMA3, false, false }, { "chatglm-bpe", QT_PRE_LLAMA3, false, false },
    { "deepseek-llm", QT_PRE_DEEPSEEK_LLM, false, false },
    { "deepseek-coder", QT_PRE_DEEPSEEK_CODER, false, false },
    { "falcon", QT_PRE_FALCON, false, false },
    { "mpt", QT_PRE_GPT2, false, false }, { "gpt-2", QT_PRE_GPT2, false, false },
    { "phi-2", QT_PRE_GPT2, false, false }, { "olmo", QT_PRE_GPT2, false, false },
    { "jais", QT_PRE_GPT2, false, false }, { "jina-es", QT_PRE_GPT2, false, false },
    { "jina-de", QT_PRE_GPT2, false, false }, { "jina-v1-en", QT_PRE_GPT2, false, false },
    { "jina-v2-es", QT_PRE_GPT2, false, false }, { "jina-v2-de", QT_PRE_GPT2, false, false },
    { "jina-v2-code", QT_PRE_GPT2, false, false }, { "roberta-bpe", QT_PRE_GPT2, false, false },
    { "gigachat", QT_PRE_GPT2, false, false }, { "exaone4", QT_PRE_GPT2, false, false },
    { "starcoder", QT_PRE_STARCODER, false, false }, { "refact", QT_PRE_STARCODER, false, false },
    { "command-r", QT_PRE_STARCODER, false, false }, { "smollm", QT_PRE_STARCODER, false, false },
    { "codeshell", QT_PRE_STARCODER, false, false }, { "exaone", QT_PRE_STARCODER, false, false },
    { "minerva-7b", QT_PRE_STARCODER, false, false },
    { "qwen2", QT_PRE_QWEN2, false, false }, { "deepseek-r1-qwen", QT_PRE_QWEN2, false, false },
    { "stablelm2", QT_PRE_QWEN2, false, false }, { "megrez", QT_PRE_QWEN2, false, false },
};

int qt_pretok_from_name(const char *name, bool *ignore_merges, bool *add_bos) {
    for (size_t i = 0; i < QT_ARRAY_LEN(NAMES); i++) {
        if (strcmp(NAMES[i].name, name) != 0) continue;
        if (ignore_merges) *ignore_merges = NAMES[i].ignore_merges;
        if (add_bos) *add_bos = NAMES[i].add_bos;
        return NAMES[i].pre;
    }
    return -1;
}

const char *qt_pretok_name(int pre) { return pre >= 0 && pre < QT_PRE_COUNT ? FAMILIES[pre].name : "?"; }

// One regex over the pieces [b[k], b[k+1]): matches and the gaps between them
// become pieces. nb: number of boundaries (pieces + 1). Returns the new count
// in out (capacity: every code point a piece, + 1).
static size_t apply_rule(const cps *c, matcher m, const size_t *b, size_t nb, size_t *out) {
    size_t no = 0;
    out[no++] = b[0];
    for (size_t k = 0; k + 1 < nb; k++) {
        size_t beg = b[k], end = b[k + 1], pos = beg, gap = beg;
        while (pos < end) {
            size_t len = m(c, pos, end);
            if (len == 0) { pos++; continue; }
            if (gap < pos) out[no++] = pos;
            pos += len;
            out[no++] = pos;
            gap = pos;
        }
        if (gap < end) out[no++] = end;
    }
    return no;
}

int qt_pretok_split(int pre, const char *text, size_t len, uint32_t *ends, int cap) {
    QT_ASSERT(pre >= 0 && pre < QT_PRE_COUNT && (text || len == 0) && cap >= 0);
    if (len == 0) return 0;
    uint32_t *cp = qt_malloc(len * sizeof(uint32_t));
    uint32_t *off = qt_malloc((len + 1) * sizeof(uint32_t));   // byte offset of each code point
    uint8_t *fl = qt_malloc(len);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (l <= 0) { c = 0xFFFD; l = 1; }   // an invalid byte is one replacement character
        cp[n] = (uint32_t)c;
        fl[n] = cp_flags((uint32_t)c);
        off[n++] = (uint32_t)i;
        i += (size_t)l;
    }
    off[n] = (uint32_t)len;
    cps c = { cp, fl };
    size_t *b = qt_malloc((n + 1) * sizeof(size_t)), *nbuf = qt_malloc((n + 1) * sizeof(size_t));
    b[0] = 0;
    b[1] = n;
    size_t nb = 2;
    const family *f = &FAMILIES[pre];
    for (size_t r = 0; r < QT_ARRAY_LEN(f->rules) && f->rules[r]; r++) {
        nb = apply_rule(&c, f->rules[r], b, nb, nbuf);
        size_t *tmp = b; b = nbuf; nbuf = tmp;
    }
    int n_words = 0;
    for (size_t k = 1; k < nb; k++) {
        if (n_words < cap) ends[n_words] = off[b[k]];
        n_words++;
    }
    qt_free(b);
    qt_free(nbuf);
    qt_free(cp);
    qt_free(off);
    qt_free(fl);
    return n_words;
}
