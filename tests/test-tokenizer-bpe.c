// test-tokenizer-bpe.c: byte-level BPE, pre-tokenizers and tokenizer.json
// against independent references.
//  - llama.cpp's test-tokenizer-0 vectors (46 cases, ids written by Hugging
//    Face tokenizers) for ggml-vocab-gpt-2.gguf, exact match;
//  - the same llama-spm vectors through the TinyLlama tokenizer.json (its ids
//    are Llama 2's), and ids equal to ggml-vocab-llama-spm.gguf on a corpus;
//  - the word splits of every pre-tokenizer family against Python's `regex`
//    module running llama.cpp's regexes (tests/data/pretok-ref.txt, written by
//    tests/ref/pretok_ref.py);
//  - decode(encode(x)) == x on a multilingual corpus for every vocabulary,
//    invalid UTF-8 -> U+FFFD, streaming of characters split across tokens;
//  - special tokens parsed only with parse_special;
//  - malformed gpt2 metadata and malformed tokenizer.json -> NULL with one
//    error naming the file.
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "test.h"
#include "tok-common.h"
#include "tokenizer/tokenizer.h"

static qt_tokenizer *load_gguf(const char *rel) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", test_models_dir(), rel);
    qt_gguf *g = qt_gguf_open(path);
    if (!g) return NULL;
    qt_tokenizer *t = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    return t;
}

static qt_tokenizer *load_hf(const char *rel) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", test_models_dir(), rel);
    return qt_tokenizer_from_hf(path);
}

// ---- pre-tokenizer splits vs Python regex ----

static void test_pretok_reference(void) {
    char *ref = qt_read_file("tests/data/pretok-ref.txt", NULL);
    CHECK(ref != NULL, "reading tests/data/pretok-ref.txt");
    if (!ref) return;
    CHECK(strncmp(ref, "qtune-pretok-ref 1\n", 19) == 0, "pretok-ref.txt: bad magic/version");
    int n_cases = 0, n_ok = 0, per_family[QT_PRE_COUNT] = {0};
    char *save = NULL;
    for (char *line = strtok_r(ref + 19, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t2) { CHECK(0, "pretok-ref.txt: malformed line"); break; }
        *t1 = 0;
        int pre = -1;
        for (int f = 0; f < QT_PRE_COUNT; f++)
            if (strcmp(qt_pretok_name(f), line) == 0) pre = f;
        CHECK(pre >= 0, "unknown family '%s'", line);
        if (pre < 0) continue;
        size_t len = (size_t)(t2 - t1 - 1) / 2;
        char *text = qt_malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            unsigned v;
            sscanf(t1 + 1 + 2 * i, "%2x", &v);
            text[i] = (char)v;
        }
        uint32_t want[1024];
        int n_want = 0;
        for (char *q = t2 + 1; *q && n_want < 1024;) {
            char *e;
            unsigned long v = strtoul(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (uint32_t)v;
            q = *e == ',' ? e + 1 : e;
        }
        uint32_t got[1024];
        int n_got = qt_pretok_split(pre, text, len, got, 1024);
        bool same = n_got == n_want && memcmp(got, want, sizeof(uint32_t) * (size_t)n_got) == 0;
        CHECK(same, "%s split of '%s' differs", line, text);
        if (!same) {
            fprintf(stderr, "  want:");
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %u", want[i]);
            fprintf(stderr, "\n  got: ");
            for (int i = 0; i < n_got && i < 1024; i++) fprintf(stderr, " %u", got[i]);
            fputc('\n', stderr);
        }
        n_ok += same;
        per_family[pre]++;
        n_cases++;
        qt_free(text);
    }
    for (int f = 0; f < QT_PRE_COUNT; f++) CHECK(per_family[f] >= 30, "family %s: %d cases", qt_pretok_name(f), per_family[f]);
    printf("pre-tokenizer splits: %d/%d match Python regex\n", n_ok, n_cases);
    qt_free(ref);

    // names: the families of the issue, and an unknown one
    static const char *const NAMES[] = { "default", "gpt-2", "llama-bpe", "qwen2", "smollm", "deepseek-llm",
                                         "deepseek-coder", "falcon", "mpt", "starcoder", "refact" };
    for (size_t i = 0; i < QT_ARRAY_LEN(NAMES); i++) CHECK(qt_pretok_from_name(NAMES[i], NULL, NULL) >= 0, "%s", NAMES[i]);
    bool im = false, ab = false;
    CHECK(qt_pretok_from_name("llama-bpe", &im, &ab) == QT_PRE_LLAMA3 && im && ab, "llama-bpe: ignore_merges, add_bos");
    CHECK(qt_pretok_from_name("no-such-pre", NULL, NULL) == -1, "unknown name");
}

// ---- round trips ----

static const char *const CORPUS[] = {
    "Once upon a time, there was a little girl named Lily.",
    " leading space",
    "  two leading spaces and trailing  ",
    "tabs\tand\nnewlines\n\n\nand \r\n crlf",
    "Emoji: \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
    "\xe4\xb8\xad\xe6\x96\x87\xe5\x88\x86\xe8\xaf\x8d \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xeb\xac\xb8\xec\x9e\xa5",
    "combining e\xcc\x81 a\xcc\x88 and precomposed \xc3\xa9",
    "\xf0\x9d\x95\xb3\xf0\x9d\x96\x8a\xf0\x9d\x96\x91 math \xe2\x88\x80x\xe2\x88\x88\xe2\x84\x9d",
    "<|endoftext|> <s>[INST] plain text that looks special [/INST]</s>",
    "it's 1234567 $3.14 don't DON'T",
    "\n",
    "   ",
    "a",
};

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (l == 0 || i + l > n) return false;
        for (size_t j = 1; j < l; j++) if (((uint8_t)s[i + j] & 0xc0) != 0x80) return false;
        i += l;
    }
    return true;
}

static void test_round_trip(const char *name, const qt_tokenizer *t) {
    if (!t) return;
    for (size_t k = 0; k < QT_ARRAY_LEN(CORPUS); k++) {
        const char *s = CORPUS[k];
        int n = 0;
        int32_t *ids = encode(t, s, strlen(s), qt_tokenizer_add_bos(t), false, &n);
        size_t dl;
        char *dec = decode(t, ids, n, &dl);
        CHECK(dl == strlen(s) && memcmp(dec, s, dl) == 0, "%s: round trip of '%s' gave '%s'", name, s, dec);
        qt_free(dec);
        qt_free(ids);
    }
    static const struct { const char *in; const char *want; } BAD[] = {
        { "\xff", "\xef\xbf\xbd" },
        { "a\xc0\xafz", "a\xef\xbf\xbd\xef\xbf\xbdz" },
        { "x\xe2\x82", "x\xef\xbf\xbd" },
        { "\xe2\x82y", "\xef\xbf\xbdy" },
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "\x80\x80 ok", "\xef\xbf\xbd\xef\xbf\xbd ok" },
        { "\xf0\x9f\xa6\x99\xf0\x9f", "\xf0\x9f\xa6\x99\xef\xbf\xbd" },
    };
    for (size_t k = 0; k < QT_ARRAY_LEN(BAD); k++) {
        int n = 0;
        int32_t *ids = encode(t, BAD[k].in, strlen(BAD[k].in), false, false, &n);
        size_t dl;
        char *dec = decode(t, ids, n, &dl);
        CHECK(valid_utf8(dec, dl), "%s: decoded invalid input %zu is not valid UTF-8", name, k);
        CHECK(dl == strlen(BAD[k].want) && memcmp(dec, BAD[k].want, dl) == 0, "%s: invalid input %zu decoded to '%s'",
              name, k, dec);
        qt_free(dec);
        qt_free(ids);
    }
    // streaming: push ids one by one; no output may be invalid UTF-8 at any point
    const char *s = CORPUS[4];
    int n = 0;
    int32_t *ids = encode(t, s, strlen(s), false, false, &n);
    qt_detok d;
    qt_detok_init(&d);
    char buf[1024];
    size_t total = 0;
    bool each_valid = true;
    for (int i = 0; i < n; i++) {
        size_t w = qt_detok_push(&d, t, ids[i], buf + total, sizeof(buf) - total);
        each_valid &= valid_utf8(buf + total, w);
        total += w;
    }
    total += qt_detok_flush(&d, buf + total, sizeof(buf) - total);
    CHECK(each_valid, "%s: a streamed chunk was not valid UTF-8", name);
    CHECK(total == strlen(s) && memcmp(buf, s, total) == 0, "%s: streamed emoji text", name);
    qt_free(ids);
}

// ---- GPT-2: specifics ----

static void test_gpt2(const qt_tokenizer *t) {
    if (!t) return;
    CHECK(qt_tokenizer_n_vocab(t) == 50257, "n_vocab %d", qt_tokenizer_n_vocab(t));
    CHECK(qt_tokenizer_bos(t) == 50256 && qt_tokenizer_eos(t) == 50256, "bos/eos 50256");
    CHECK(strcmp(qt_tokenizer_model_name(t), "bpe") == 0 && strcmp(qt_tokenizer_pre_name(t), "gpt2") == 0, "names");
    CHECK(qt_tokenizer_is_eog(t, 50256), "<|endoftext|> ends generation");
    // "Hello world" is 15496 995 in GPT-2 (tiktoken's gpt2 encoding)
    int n = 0;
    int32_t *ids = encode(t, "Hello world", 11, false, false, &n);
    CHECK(n == 2 && ids[0] == 15496 && ids[1] == 995, "Hello world");
    qt_free(ids);
    // special tokens: only with parse_special
    const char *s = "a<|endoftext|>b";
    ids = encode(t, s, strlen(s), false, true, &n);
    CHECK(n == 3 && ids[1] == 50256, "parse_special finds <|endoftext|> (n=%d)", n);
    qt_free(ids);
    ids = encode(t, s, strlen(s), false, false, &n);
    bool has = false;
    for (int i = 0; i < n; i++) has |= ids[i] == 50256;
    CHECK(!has && n > 3, "without parse_special <|endoftext|> is text");
    qt_free(ids);
    // the piece of a byte-level token is bytes: "Ġworld" -> " world"
    size_t pl;
    const char *pc = qt_token_to_piece(t, 995, false, &pl);
    CHECK(pl == 6 && memcmp(pc, " world", 6) == 0, "piece of 995");
    CHECK(strcmp(qt_token_text(t, 995), "\xc4\xa0world") == 0, "text of 995");
    // the newline token: "Ċ" is byte 0x0a
    pc = qt_token_to_piece(t, 198, false, &pl);
    CHECK(pl == 1 && pc[0] == '\n', "piece of 198");
}

// ---- tokenizer.json (TinyLlama) vs the llama-spm GGUF ----

static void test_hf_vs_gguf(const qt_tokenizer *hf) {
    qt_tokenizer *g = load_gguf("llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    CHECK(hf && g, "loading both Llama 2 tokenizers");
    if (!hf || !g) { qt_tokenizer_free(g); return; }
    CHECK(qt_tokenizer_bos(hf) == 1 && qt_tokenizer_eos(hf) == 2 && qt_tokenizer_unk(hf) == 0, "hf special ids");
    CHECK(qt_tokenizer_pad(hf) == 32000, "hf pad [PAD] = 32000, got %d", qt_tokenizer_pad(hf));
    CHECK(qt_tokenizer_add_bos(hf) && !qt_tokenizer_add_eos(hf), "hf add_bos from the template/config");
    CHECK(qt_tokenizer_n_vocab(hf) == 32001, "hf n_vocab %d", qt_tokenizer_n_vocab(hf));
    CHECK(qt_token_type(hf, 1) == 3 && qt_token_type(hf, 0) == 2 && qt_token_type(hf, 13) == 6, "hf token types");
    // a corpus: every line of the ShawGPT dataset plus the round-trip corpus, with BOS, parse_special on
    char path[1024];
    snprintf(path, sizeof(path), "%s/datasets/shawgpt-qlora/train.jsonl", test_models_dir());
    char *data = qt_read_file(path, NULL);
    CHECK(data != NULL, "reading %s", path);
    int n_lines = 0, n_same = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *save = NULL, *copy = data ? qt_strdup(data) : NULL;
        for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
            int na = 0, nb = 0;
            int32_t *a = encode(hf, line, strlen(line), true, pass == 1, &na);
            int32_t *b = encode(g, line, strlen(line), true, pass == 1, &nb);
            bool same = na == nb && memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0;
            if (!same && n_lines - n_same < 3) fprintf(stderr, "  differs: %.80s\n", line);
            n_same += same;
            n_lines++;
            qt_free(a);
            qt_free(b);
        }
        qt_free(copy);
    }
    for (size_t k = 0; k < QT_ARRAY_LEN(CORPUS); k++) {
        int na = 0, nb = 0;
        int32_t *a = encode(hf, CORPUS[k], strlen(CORPUS[k]), true, false, &na);
        int32_t *b = encode(g, CORPUS[k], strlen(CORPUS[k]), true, false, &nb);
        bool same = na == nb && memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0;
        n_same += same;
        n_lines++;
        qt_free(a);
        qt_free(b);
    }
    CHECK(n_lines > 100 && n_same == n_lines, "tokenizer.json vs GGUF: %d/%d texts give the same ids", n_same, n_lines);
    printf("tokenizer.json vs ggml-vocab-llama-spm.gguf: %d/%d texts give the same ids\n", n_same, n_lines);
    qt_free(data);
    qt_tokenizer_free(g);
}

// ---- malformed inputs ----

static char g_last_error[4096];
static int g_n_errors;
static void capture(const char *line, void *ud) {
    (void)ud;
    if (strncmp(line, "error", 5) == 0) g_n_errors++;
    snprintf(g_last_error, sizeof(g_last_error), "%s", line);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "creating %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

// a tiny byte-level vocabulary: the 256 byte characters are ids 0..255, then merges
static qt_tokenizer *build_gpt2(const char *dir, const char *pre, const char *const *merges, int n_merges,
                                char *path_out) {
    static char bufs[260][8];
    const char *toks[260];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        // GPT-2 bytes_to_unicode, written out independently of bpe.c
        int cp = b;
        if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
            int k = 0;
            for (int x = 0; x < b; x++) k += !((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae);
            cp = 256 + k;
        }
        char *p = bufs[n];
        if (cp < 0x80) { p[0] = (char)cp; p[1] = 0; }
        else { p[0] = (char)(0xc0 | (cp >> 6)); p[1] = (char)(0x80 | (cp & 0x3f)); p[2] = 0; }
        toks[n++] = p;
    }
    toks[n++] = "ab";
    toks[n++] = "abc";
    toks[n++] = "\xc4\xa0""a";   // "Ġa"
    toks[n++] = "<|end|>";
    int32_t types[260];
    for (int i = 0; i < n; i++) types[i] = 1;
    types[259] = 3;
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) qt_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, types, (uint64_t)n);
    if (merges) qt_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, (uint64_t)n_merges);
    qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 259);
    snprintf(path_out, 1024, "%s/gpt2-vocab.gguf", dir);
    int rc = qt_gguf_write(w, path_out);
    qt_gguf_writer_free(w);
    CHECK(rc == QT_OK, "writing %s", path_out);
    qt_gguf *g = qt_gguf_open(path_out);
    qt_tokenizer *t = g ? qt_tokenizer_from_gguf(g) : NULL;
    qt_gguf_close(g);
    unlink(path_out);
    return t;
}

static void expect_error(qt_tokenizer *t, const char *what, const char *path, const char *words) {
    CHECK(t == NULL, "%s: loaded", what);
    qt_tokenizer_free(t);
    CHECK(g_n_errors == 1, "%s: %d errors logged, expected 1", what, g_n_errors);
    CHECK(strstr(g_last_error, path) != NULL, "%s: error '%s' does not name %s", what, g_last_error, path);
    CHECK(strstr(g_last_error, words) != NULL, "%s: error '%s' does not say '%s'", what, g_last_error, words);
}

static void test_synthetic_gpt2(const char *dir) {
    char path[1024];
    static const char *const MERGES[] = { "a b", "ab c", "\xc4\xa0 a" };
    qt_tokenizer *t = build_gpt2(dir, "gpt-2", MERGES, 3, path);
    CHECK(t != NULL, "synthetic gpt2 vocab loads");
    if (t) {
        int32_t ids[16];
        int n = qt_tokenize(t, "abc ab a", 8, false, false, ids, 16);
        // words "abc", " ab", " a". "abc": a+b (rank 0) then ab+c -> 257. " ab": a+b
        // (rank 0) comes before Ġ+a (rank 2), leaving Ġ (32) ab (256). " a": Ġa (258).
        CHECK(n == 4 && ids[0] == 257 && ids[1] == 32 && ids[2] == 256 && ids[3] == 258,
              "synthetic merges by rank (n=%d: %d %d %d %d)", n, ids[0], ids[1], ids[2], ids[3]);
        n = qt_tokenize(t, "x<|end|>", 8, false, true, ids, 16);
        CHECK(n == 2 && ids[1] == 259, "control token with parse_special");
        CHECK(qt_tokenizer_is_eog(t, 259) && !qt_tokenizer_add_bos(t), "eog, no BOS for gpt2");
        qt_tokenizer_free(t);
    }
    // llama-bpe: ignore_merges takes a whole-word token even when merges would not make it
    static const char *const MERGES2[] = { "b c" };
    t = build_gpt2(dir, "llama-bpe", MERGES2, 1, path);
    CHECK(t != NULL, "synthetic llama-bpe vocab loads");
    if (t) {
        int32_t ids[16];
        int n = qt_tokenize(t, "abc", 3, false, false, ids, 16);
        CHECK(n == 1 && ids[0] == 257, "ignore_merges: 'abc' is one token (n=%d)", n);
        qt_tokenizer_free(t);
    }

    static const struct { const char *pre; bool merges; const char *bad_merge; const char *key; const char *words; } CASES[] = {
        { "no-such-pre", true, NULL, "tokenizer.ggml.pre", "unknown pre-tokenizer 'no-such-pre'" },
        { "gpt-2", false, NULL, "tokenizer.ggml.merges", "missing" },
        { "gpt-2", true, "nospace", "tokenizer.ggml.merges", "not two tokens" },
    };
    for (size_t k = 0; k < QT_ARRAY_LEN(CASES); k++) {
        const char *m[4] = { "a b", CASES[k].bad_merge };
        g_last_error[0] = 0;
        g_n_errors = 0;
        qt_log_set_sink(capture, NULL);
        t = build_gpt2(dir, CASES[k].pre, CASES[k].merges ? m : NULL, CASES[k].bad_merge ? 2 : 1, path);
        qt_log_set_sink(NULL, NULL);
        expect_error(t, CASES[k].words, path, CASES[k].key);
        CHECK(strstr(g_last_error, CASES[k].words) != NULL, "error '%s' lacks '%s'", g_last_error, CASES[k].words);
    }
}

static void test_malformed_json(const char *dir) {
    char path[1200], sub[1024];
    static const struct { const char *json; const char *words; } CASES[] = {
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [", "invalid JSON" },
        { "[1, 2]", "not a JSON object" },
        { "{\"version\": \"1.0\"}", "model: missing" },
        { "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "'Unigram' is not supported" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
          "model.vocab: missing or not an object" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", 7]},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "model.merges[1]: not a string" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 99999999}, \"merges\": []},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "has id out of range" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "has id out of range" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "not a number" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "id 0 is used by" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
          "model.merges: missing" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
          "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"},"
          " \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}}", "Split with pattern" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
          "{\"type\": \"Whitespace\"}}", "'Whitespace' is not supported" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "layout not supported" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": "
          "{\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "'Lowercase' is not supported" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": \"x\"}],"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "added_tokens[0]" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "model.unk_token" },
        { "", "invalid JSON" },
    };
    for (size_t k = 0; k < QT_ARRAY_LEN(CASES); k++) {
        snprintf(sub, sizeof(sub), "%s/hf-%zu", dir, k);
        mkdir(sub, 0700);
        snprintf(path, sizeof(path), "%s/tokenizer.json", sub);
        write_file(path, CASES[k].json);
        g_last_error[0] = 0;
        g_n_errors = 0;
        qt_log_set_sink(capture, NULL);
        qt_tokenizer *t = qt_tokenizer_from_hf(sub);
        qt_log_set_sink(NULL, NULL);
        expect_error(t, CASES[k].words, path, CASES[k].words);
        unlink(path);
        rmdir(sub);
    }
    // a well-formed minimal byte-level tokenizer.json with a bad tokenizer_config.json
    snprintf(sub, sizeof(sub), "%s/hf-ok", dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof(path), "%s/tokenizer.json", sub);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", \"b\"]]},"
                     " \"added_tokens\": [{\"id\": 3, \"content\": \"<|bos|>\", \"special\": true}],"
                     " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
                     " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
                     "{\"id\": \"<|bos|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}}");
    qt_tokenizer *t = qt_tokenizer_from_hf(sub);
    CHECK(t != NULL, "minimal tokenizer.json loads");
    if (t) {
        int32_t ids[8];
        int n = qt_tokenize(t, "ab", 2, qt_tokenizer_add_bos(t), false, ids, 8);
        CHECK(n == 2 && ids[0] == 3 && ids[1] == 2, "minimal: <|bos|> ab (n=%d)", n);
        qt_tokenizer_free(t);
    }
    char cfg[1200];
    snprintf(cfg, sizeof(cfg), "%s/tokenizer_config.json", sub);
    write_file(cfg, "{\"bos_token\": \"<nope>\"}");
    g_n_errors = 0;
    qt_log_set_sink(capture, NULL);
    t = qt_tokenizer_from_hf(sub);
    qt_log_set_sink(NULL, NULL);
    expect_error(t, "bos_token not in vocab", "tokenizer_config.json", "bos_token '<nope>'");
    write_file(cfg, "{\"bos_token\": ");
    g_n_errors = 0;
    qt_log_set_sink(capture, NULL);
    t = qt_tokenizer_from_hf(sub);
    qt_log_set_sink(NULL, NULL);
    expect_error(t, "invalid tokenizer_config.json", cfg, "invalid JSON");
    unlink(cfg);
    unlink(path);
    rmdir(sub);
    // no tokenizer.json at all
    g_n_errors = 0;
    qt_log_set_sink(capture, NULL);
    t = qt_tokenizer_from_hf(dir);
    qt_log_set_sink(NULL, NULL);
    expect_error(t, "missing tokenizer.json", dir, "no such file");
}

// ---- speed: merges are O(n log n) ----

static void test_speed(const qt_tokenizer *t) {
    if (!t) return;
    // one 256 KiB word without spaces: quadratic merging would take minutes
    size_t n = 1 << 18;
    char *s = qt_malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = "abcdefghij"[i % 10];
    double t0 = qt_time_s();
    int cnt = qt_tokenize(t, s, n, false, false, NULL, 0);
    double dt = qt_time_s() - t0;
    const double MAX_SECONDS = 20.0;   // well under a second without sanitizers
    CHECK(cnt > 0 && dt < MAX_SECONDS, "256 KiB word: %d tokens in %.2f s", cnt, dt);
    printf("gpt2: one 256 KiB word -> %d tokens in %.3f s\n", cnt, dt);
    qt_free(s);
}

int main(void) {
    qt_tokenizer *gpt2 = load_gguf("llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    CHECK(gpt2 != NULL, "loading ggml-vocab-gpt-2.gguf");
    check_llama_vectors("gpt-2", gpt2, "llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    test_gpt2(gpt2);
    test_round_trip("gpt-2", gpt2);
    test_speed(gpt2);
    qt_tokenizer_free(gpt2);

    qt_tokenizer *hf = load_hf("hf-tinyllama-1.1b-chat-v0.1");
    CHECK(hf != NULL, "loading the TinyLlama tokenizer.json");
    check_llama_vectors("tinyllama tokenizer.json", hf, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    test_hf_vs_gguf(hf);
    test_round_trip("tinyllama tokenizer.json", hf);
    qt_tokenizer_free(hf);

    test_pretok_reference();

    char tmpl[] = "/tmp/qtune-tokbpe-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL, "mkdtemp");
    if (dir) {
        test_synthetic_gpt2(dir);
        test_malformed_json(dir);
        rmdir(dir);
    }
    TEST_END();
}
