// test-tokenizer.c: the SPM tokenizer against independent references.
//  - llama.cpp's test-tokenizer-0 vectors (.inp/.out, 46 cases) for the
//    llama-spm and phi-3 vocabularies, exact match;
//  - Google SentencePiece itself (tests/data/spm-ref.txt, written by
//    tests/ref/spm_ref.py from Llama 2's tokenizer.model) on
//    ggml-vocab-llama-spm.gguf, exact match;
//  - stories260K.gguf: known encodings, special-token parsing;
//  - decode(encode(x)) == x on a multilingual corpus, invalid UTF-8 -> U+FFFD;
//  - malformed vocabulary metadata -> NULL with an error naming file and key.
#include <stdint.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "test.h"
#include "tok-common.h"
#include "tokenizer/tokenizer.h"

static qt_tokenizer *load(const char *rel, qt_gguf **gout) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", test_models_dir(), rel);
    qt_gguf *g = qt_gguf_open(path);
    if (!g) return NULL;
    qt_tokenizer *t = qt_tokenizer_from_gguf(g);
    if (gout) *gout = g;
    else qt_gguf_close(g);
    return t;
}

// ---- llama.cpp test-tokenizer-0 vectors ----

static void test_vocab_vectors(const char *vocab) {
    char rel[256];
    snprintf(rel, sizeof(rel), "llama.cpp-vocab/%s", vocab);
    qt_tokenizer *t = load(rel, NULL);
    CHECK(t != NULL, "loading %s", vocab);
    if (!t) return;
    check_llama_vectors(vocab, t, rel);
    qt_tokenizer_free(t);
}

// ---- SentencePiece reference (tests/data/spm-ref.txt) ----

static void test_spm_reference(void) {
    qt_tokenizer *t = load("llama.cpp-vocab/ggml-vocab-llama-spm.gguf", NULL);
    char *ref = qt_read_file("tests/data/spm-ref.txt", NULL);
    CHECK(t && ref, "loading the llama-spm vocab and tests/data/spm-ref.txt");
    if (!t || !ref) { qt_free(ref); qt_tokenizer_free(t); return; }
    CHECK(strncmp(ref, "qtune-spm-ref 1\n", 16) == 0, "spm-ref.txt: bad magic/version");
    int n_cases = 0, n_ok = 0;
    char *save = NULL;
    for (char *line = strtok_r(ref + 16, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab) { CHECK(0, "spm-ref.txt: no tab in line"); break; }
        size_t hl = (size_t)(tab - line), len = hl / 2;
        char *text = qt_malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            unsigned v;
            sscanf(line + 2 * i, "%2x", &v);
            text[i] = (char)v;
        }
        text[len] = 0;
        int32_t want[1024];
        int n_want = 0;
        for (char *q = tab + 1; *q && n_want < 1024;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (int32_t)v;
            q = e;
        }
        int n_got = 0;
        int32_t *got = encode(t, text, len, false, false, &n_got);
        bool same = n_got == n_want && memcmp(got, want, sizeof(int32_t) * (size_t)n_got) == 0;
        CHECK(same, "sentencepiece case '%s' differs", text);
        if (!same) { print_ids("want", want, n_want); print_ids("got ", got, n_got); }
        n_ok += same;
        qt_free(got);
        qt_free(text);
        n_cases++;
    }
    CHECK(n_cases >= 20, "spm-ref.txt: only %d cases", n_cases);
    printf("sentencepiece reference: %d/%d match\n", n_ok, n_cases);
    qt_free(ref);
    qt_tokenizer_free(t);
}

// ---- stories260K: the model's own vocabulary ----

static void test_stories(void) {
    qt_tokenizer *t = load("tinystories-260K/stories260K.gguf", NULL);
    CHECK(t != NULL, "loading stories260K.gguf");
    if (!t) return;
    CHECK(qt_tokenizer_n_vocab(t) == 512, "n_vocab %d", qt_tokenizer_n_vocab(t));
    CHECK(qt_tokenizer_bos(t) == 1 && qt_tokenizer_eos(t) == 2 && qt_tokenizer_unk(t) == 0, "special ids");
    CHECK(qt_tokenizer_pad(t) == -1, "pad 4294967295 means none, got %d", qt_tokenizer_pad(t));
    CHECK(qt_tokenizer_add_bos(t), "add_bos defaults to true");
    CHECK(qt_tokenizer_is_eog(t, 2) && !qt_tokenizer_is_eog(t, 1), "eog");
    CHECK(qt_tokenizer_find(t, "<0x0A>", 6) == 13, "byte token <0x0A> is id 13");
    size_t pl;
    const char *pc = qt_token_to_piece(t, 13, false, &pl);
    CHECK(pl == 1 && pc[0] == '\n', "<0x0A> decodes to a newline");
    pc = qt_token_to_piece(t, 1, false, &pl);
    CHECK(pl == 0, "BOS is empty unless special");
    pc = qt_token_to_piece(t, 1, true, &pl);
    CHECK(pl == 3 && memcmp(pc, "<s>", 3) == 0, "BOS with special is <s>");
    CHECK(strcmp(qt_token_text(t, 1), "<s>") == 0, "token text of BOS");

    // "Once upon a time": every id a vocabulary token, the pieces spell the
    // text, and the greedy max-score rule leaves no mergeable adjacent pair
    // whose merge would have a higher score than a merge made.
    const char *s = "Once upon a time";
    int n = 0;
    int32_t *ids = encode(t, s, strlen(s), true, false, &n);
    CHECK(n >= 2 && ids[0] == 1, "BOS first");
    char spelled[256] = "";
    for (int i = 1; i < n; i++) strcat(spelled, qt_token_text(t, ids[i]));
    CHECK(strcmp(spelled, "\xe2\x96\x81Once\xe2\x96\x81upon\xe2\x96\x81""a\xe2\x96\x81time") == 0,
          "pieces spell '%s'", spelled);
    // stories260K was trained on TinyStories: these words are single tokens
    for (int i = 1; i < n; i++) CHECK(qt_token_type(t, ids[i]) == 1, "normal token %d", ids[i]);
    size_t dl;
    char *dec = decode(t, ids, n, &dl);
    CHECK(strcmp(dec, s) == 0, "decode gives '%s'", dec);
    qt_free(dec);
    qt_free(ids);

    // parse_special: "<s>" is BOS only when asked, and the space prefix follows it
    const char *sp = "<s>Hi";
    ids = encode(t, sp, strlen(sp), false, true, &n);
    CHECK(n >= 2 && ids[0] == 1, "parse_special finds <s>");
    int n2 = 0;
    int32_t *ids2 = encode(t, "Hi", 2, false, false, &n2);
    CHECK(n == n2 + 1 && memcmp(ids + 1, ids2, sizeof(int32_t) * (size_t)n2) == 0,
          "text after a special token is encoded as at the start (with its space prefix)");
    qt_free(ids);
    qt_free(ids2);
    ids = encode(t, sp, strlen(sp), false, false, &n);
    bool has_bos = false;
    for (int i = 0; i < n; i++) has_bos |= ids[i] == 1;
    CHECK(!has_bos && n > 2, "without parse_special <s> is plain text");
    qt_free(ids);

    // empty text: only BOS (sentencepiece/llama.cpp behaviour)
    int32_t one[4];
    CHECK(qt_tokenize(t, "", 0, true, false, one, 4) == 1 && one[0] == 1, "empty text -> [BOS]");
    CHECK(qt_tokenize(t, "", 0, false, false, one, 4) == 0, "empty text -> []");
    qt_tokenizer_free(t);
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
    "<s>[INST] plain text that looks special [/INST]</s>",
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

static void test_round_trip(const char *vocab_rel) {
    qt_tokenizer *t = load(vocab_rel, NULL);
    CHECK(t != NULL, "loading %s", vocab_rel);
    if (!t) return;
    for (size_t k = 0; k < QT_ARRAY_LEN(CORPUS); k++) {
        const char *s = CORPUS[k];
        int n = 0;
        int32_t *ids = encode(t, s, strlen(s), true, false, &n);
        size_t dl;
        char *dec = decode(t, ids, n, &dl);
        CHECK(dl == strlen(s) && memcmp(dec, s, dl) == 0, "%s: round trip of '%s' gave '%s'", vocab_rel, s, dec);
        qt_free(dec);
        qt_free(ids);
    }
    // invalid UTF-8: no crash, every output valid UTF-8, replacement characters
    static const struct { const char *in; const char *want; } BAD[] = {
        { "\xff", "\xef\xbf\xbd" },
        { "a\xc0\xafz", "a\xef\xbf\xbd\xef\xbf\xbdz" },        // overlong: each byte replaced
        { "x\xe2\x82", "x\xef\xbf\xbd" },                      // truncated at the end: one U+FFFD
        { "\xe2\x82y", "\xef\xbf\xbdy" },                      // truncated before ASCII
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },  // surrogate
        { "\x80\x80 ok", "\xef\xbf\xbd\xef\xbf\xbd ok" },
        { "\xf0\x9f\xa6\x99\xf0\x9f", "\xf0\x9f\xa6\x99\xef\xbf\xbd" },
    };
    for (size_t k = 0; k < QT_ARRAY_LEN(BAD); k++) {
        int n = 0;
        int32_t *ids = encode(t, BAD[k].in, strlen(BAD[k].in), true, false, &n);
        size_t dl;
        char *dec = decode(t, ids, n, &dl);
        CHECK(valid_utf8(dec, dl), "%s: decoded invalid input %zu is not valid UTF-8", vocab_rel, k);
        CHECK(dl == strlen(BAD[k].want) && memcmp(dec, BAD[k].want, dl) == 0,
              "%s: invalid input %zu decoded to '%s'", vocab_rel, k, dec);
        qt_free(dec);
        qt_free(ids);
    }
    // streaming: a multi-byte character split across byte tokens is held back
    const char *emoji = "\xf0\x9f\xa6\x99";   // llama emoji: byte tokens in these vocabularies
    int n = 0;
    int32_t *ids = encode(t, emoji, 4, false, false, &n);
    qt_detok d;
    qt_detok_init(&d);
    char buf[64];
    size_t total = 0, first_partial = 0;
    for (int i = 0; i < n; i++) {
        size_t w = qt_detok_push(&d, t, ids[i], buf + total, sizeof(buf) - total);
        if (i < n - 1) first_partial += w;
        total += w;
    }
    CHECK(first_partial == 0 || n == 1, "bytes of an incomplete character were emitted early");
    CHECK(total == 4 && memcmp(buf, emoji, 4) == 0, "streamed emoji");
    qt_free(ids);
    // out-of-range ids decode to nothing
    qt_detok_init(&d);
    CHECK(qt_detok_push(&d, t, -5, buf, sizeof(buf)) == 0, "negative id");
    CHECK(qt_detok_push(&d, t, 1 << 30, buf, sizeof(buf)) == 0, "huge id");
    qt_tokenizer_free(t);
}

// ---- malformed metadata ----

static char g_last_error[4096];
static void capture(const char *line, void *ud) {
    (void)ud;
    snprintf(g_last_error, sizeof(g_last_error), "%s", line);
}

enum { BAD_NONE, BAD_MISSING_TOKENS, BAD_SHORT_SCORES, BAD_BOS_RANGE, BAD_SCORES_TYPE, BAD_TOKENS_TYPE,
       BAD_MODEL_T5, BAD_TYPE_VALUE, BAD_BYTE_TEXT, BAD_MISSING_MODEL };

static qt_tokenizer *build_vocab(const char *dir, int bad, char *path_out) {
    static const char *const toks[] = { "<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81", "a", "b", "ab",
                                        "\xe2\x96\x81""ab" };
    float scores[9] = { 0, 0, 0, 0, -1, -2, -3, -4, -5 };
    int32_t types[9] = { 2, 3, 3, 6, 1, 1, 1, 1, 1 };
    qt_gguf_writer *w = qt_gguf_writer_init();
    if (bad != BAD_MISSING_MODEL) qt_gguf_set_str(w, "tokenizer.ggml.model", bad == BAD_MODEL_T5 ? "t5" : "llama");
    if (bad == BAD_TOKENS_TYPE) qt_gguf_set_arr(w, "tokenizer.ggml.tokens", QT_GGUF_INT32, types, 9);
    else if (bad != BAD_MISSING_TOKENS) qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 9);
    if (bad == BAD_SCORES_TYPE) qt_gguf_set_str(w, "tokenizer.ggml.scores", "not an array");
    else qt_gguf_set_arr(w, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, scores, bad == BAD_SHORT_SCORES ? 8 : 9);
    if (bad == BAD_TYPE_VALUE) types[5] = 9;
    if (bad == BAD_BYTE_TEXT) types[4] = 6;
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, types, 9);
    qt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", bad == BAD_BOS_RANGE ? 9 : 1);
    qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    qt_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 4294967295u);
    snprintf(path_out, 1024, "%s/vocab-%d.gguf", dir, bad);
    int rc = qt_gguf_write(w, path_out);
    qt_gguf_writer_free(w);
    CHECK(rc == QT_OK, "writing %s", path_out);
    qt_gguf *g = qt_gguf_open(path_out);
    CHECK(g != NULL, "reopening %s", path_out);
    if (!g) return NULL;
    qt_tokenizer *t = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    unlink(path_out);
    return t;
}

static void test_malformed(void) {
    char tmpl[] = "/tmp/qtune-tok-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL, "mkdtemp");
    if (!dir) return;
    char path[1024];
    // the well-formed one works: "ab" merges, "A" falls back to <0x41>, "c" to <unk>
    qt_tokenizer *t = build_vocab(dir, BAD_NONE, path);
    CHECK(t != NULL, "well-formed synthetic vocab loads");
    if (t) {
        int32_t ids[16];
        int n = qt_tokenize(t, "ab", 2, true, false, ids, 16);
        CHECK(n == 2 && ids[0] == 1 && ids[1] == 8, "'ab' -> <s> \xe2\x96\x81""ab (n=%d)", n);
        n = qt_tokenize(t, "abA", 3, false, false, ids, 16);
        CHECK(n == 2 && ids[0] == 8 && ids[1] == 3, "'abA' -> \xe2\x96\x81""ab <0x41> (n=%d)", n);
        n = qt_tokenize(t, "bc", 2, false, false, ids, 16);
        // "c" has no token and no byte token <0x63>: the unknown token
        CHECK(n == 3 && ids[0] == 4 && ids[1] == 6 && ids[2] == 0, "'bc' -> \xe2\x96\x81 b <unk> (n=%d)", n);
        CHECK(qt_tokenizer_pad(t) == -1, "pad none");
        qt_tokenizer_free(t);
    }
    static const struct { int bad; const char *key; const char *words; } CASES[] = {
        { BAD_MISSING_TOKENS, "tokenizer.ggml.tokens", "missing" },
        { BAD_SHORT_SCORES, "tokenizer.ggml.scores", "8 scores for 9 tokens" },
        { BAD_BOS_RANGE, "tokenizer.ggml.bos_token_id", "out of range" },
        { BAD_SCORES_TYPE, "tokenizer.ggml.scores", "" },
        { BAD_TOKENS_TYPE, "tokenizer.ggml.tokens", "" },
        { BAD_MODEL_T5, "tokenizer.ggml.model", "tokenizer model 't5' not supported" },
        { BAD_TYPE_VALUE, "tokenizer.ggml.token_type", "type 9" },
        { BAD_BYTE_TEXT, "tokenizer.ggml.tokens", "<0xNN>" },
        { BAD_MISSING_MODEL, "tokenizer.ggml.model", "missing" },
    };
    for (size_t k = 0; k < QT_ARRAY_LEN(CASES); k++) {
        g_last_error[0] = 0;
        qt_log_set_sink(capture, NULL);
        t = build_vocab(dir, CASES[k].bad, path);
        qt_log_set_sink(NULL, NULL);
        CHECK(t == NULL, "malformed case %d loaded", CASES[k].bad);
        qt_tokenizer_free(t);
        CHECK(strstr(g_last_error, CASES[k].key) != NULL, "case %d: error '%s' does not name key %s",
              CASES[k].bad, g_last_error, CASES[k].key);
        CHECK(strstr(g_last_error, path) != NULL, "case %d: error '%s' does not name the file", CASES[k].bad,
              g_last_error);
        CHECK(strstr(g_last_error, CASES[k].words) != NULL, "case %d: error '%s' does not say '%s'",
              CASES[k].bad, g_last_error, CASES[k].words);
    }
    rmdir(dir);

    // the real gpt2 vocabulary loads as byte-level BPE (its vectors: test-tokenizer-bpe.c)
    t = load("llama.cpp-vocab/ggml-vocab-gpt-2.gguf", NULL);
    CHECK(t != NULL && strcmp(qt_tokenizer_model_name(t), "bpe") == 0, "gpt2 vocabulary loads as byte-level BPE");
    qt_tokenizer_free(t);
}

// ---- speed: encoding is O(n log n), not quadratic ----

static void test_speed(void) {
    qt_tokenizer *t = load("llama.cpp-vocab/ggml-vocab-llama-spm.gguf", NULL);
    if (!t) return;
    size_t n = 1 << 20;
    char *s = qt_malloc(n);
    static const char words[] = "the quick brown fox jumps over the lazy dog \xe4\xb8\xad\xe6\x96\x87 ";
    for (size_t i = 0; i < n; i++) s[i] = words[i % (sizeof(words) - 1)];
    n -= n % (sizeof(words) - 1);
    double t0 = qt_time_s();
    int cnt = qt_tokenize(t, s, n, false, false, NULL, 0);
    double dt = qt_time_s() - t0;
    // 1 MiB in well under a few seconds even under ASan; quadratic would take minutes
    const double MAX_SECONDS = 20.0;
    CHECK(cnt > 0 && dt < MAX_SECONDS, "1 MiB: %d tokens in %.2f s", cnt, dt);
    printf("encoded 1 MiB into %d tokens in %.3f s\n", cnt, dt);
    qt_free(s);
    qt_tokenizer_free(t);
}

int main(void) {
    test_vocab_vectors("ggml-vocab-llama-spm.gguf");
    test_vocab_vectors("ggml-vocab-phi-3.gguf");
    test_spm_reference();
    test_stories();
    test_round_trip("tinystories-260K/stories260K.gguf");
    test_round_trip("llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    test_round_trip("llama.cpp-vocab/ggml-vocab-phi-3.gguf");
    test_malformed();
    test_speed();
    TEST_END();
}
