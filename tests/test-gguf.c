// test-gguf.c: the GGUF reader and writer.
// (a) the real stories260K.gguf and llama.cpp's vocab-only files parse, with
//     the facts stated in ../shared/models/README.md;
// (b) the writer round-trips every value type, arrays and tensors of several
//     types; re-writing stories260K.gguf gives the original bytes (llama.cpp's
//     writer is the independent reference for the layout);
// (c) corrupt fixtures, built byte by byte here, each fail with exactly one
//     error line naming the file and the problem; every truncation of a header
//     fails cleanly; random byte corruption never crashes (run under ASan).
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "test.h"

// ---- error capture ----
static int n_err;
static char last_err[2048];
static void sink(const char *line, void *ud) {
    (void)ud;
    if (strncmp(line, "error: ", 7) != 0) return;
    n_err++;
    snprintf(last_err, sizeof(last_err), "%s", line);
}
static void err_reset(void) { n_err = 0; last_err[0] = 0; }

// ---- temp files ----
static char tmpdir[64];
// Returns one of 4 rotating buffers: a few paths can be alive at once.
static char *tmp_path(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", tmpdir, name);
    return p[k];
}
static void write_bytes(const char *path, const void *p, size_t n) {
    // unlink first: truncating a file that holds data makes ext4 flush it
    // (auto_da_alloc), which turns the truncation loops into seconds of I/O
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

// ---- byte builder for hand-made GGUF files ----
typedef struct { uint8_t *p; size_t n, cap; } bb;
static void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { for (int i = 0; i < 4; i++) bb_u8(b, (uint8_t)(v >> 8 * i)); }
static void bb_u64(bb *b, uint64_t v) { for (int i = 0; i < 8; i++) bb_u8(b, (uint8_t)(v >> 8 * i)); }
static void bb_str(bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4); bb_u32(b, version); bb_u64(b, n_tensors); bb_u64(b, n_kv);
}
static void kv_u32(bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_u32(b, QT_GGUF_UINT32); bb_u32(b, v); }
static void kv_str(bb *b, const char *k, const char *v) { bb_str(b, k); bb_u32(b, QT_GGUF_STRING); bb_str(b, v); }
// tensor info with up to 4 dims given as n_dims then values
static void tinfo(bb *b, const char *name, uint32_t type, uint64_t offset, uint32_t n_dims, ...) {
    va_list ap;
    va_start(ap, n_dims);
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) bb_u64(b, va_arg(ap, uint64_t));
    bb_u32(b, type);
    bb_u64(b, offset);
    va_end(ap);
}
// pads to 32 and appends n data bytes
static void data(bb *b, size_t n) {
    while (b->n % 32) bb_u8(b, 0);
    for (size_t i = 0; i < n; i++) bb_u8(b, (uint8_t)(i * 7 + 1));
}

// A valid file: 2 kv, F32 "a" [8] at 0, Q8_0 "b" [32,2] (2 blocks of 34 bytes) at 32.
static void base_kvs(bb *b) { kv_str(b, "general.architecture", "llama"); kv_u32(b, "x.n", 7); }
static void fx_valid(bb *b) {
    hdr(b, 3, 2, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)8);
    tinfo(b, "b", QT_TYPE_Q8_0, 32, 2, (uint64_t)32, (uint64_t)2);
    data(b, 32 + 68);
}
static void fx_bad_magic(bb *b) { fx_valid(b); b->p[0] = 'X'; }
static void fx_empty(bb *b) { (void)b; }
static void fx_v1(bb *b) { fx_valid(b); b->p[4] = 1; }
static void fx_v99(bb *b) { fx_valid(b); b->p[4] = 99; }
static void fx_big_endian(bb *b) { fx_valid(b); b->p[4] = 0; b->p[7] = 3; }
static void fx_huge_tensors(bb *b) { hdr(b, 3, 1ull << 60, 2); base_kvs(b); data(b, 64); }
static void fx_huge_kv(bb *b) { hdr(b, 3, 0, 1ull << 60); base_kvs(b); }
static void fx_huge_str(bb *b) {
    hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, QT_GGUF_STRING); bb_u64(b, 1ull << 60); bb_put(b, "abc", 3);
}
static void fx_huge_key(bb *b) { hdr(b, 3, 0, 1); bb_u64(b, UINT64_MAX); bb_put(b, "abcdefgh", 8); }
static void fx_huge_arr(bb *b) {
    hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, QT_GGUF_ARRAY); bb_u32(b, QT_GGUF_STRING);
    bb_u64(b, 1ull << 60); bb_str(b, "x");
}
static void fx_huge_arr_u32(bb *b) {
    hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, QT_GGUF_ARRAY); bb_u32(b, QT_GGUF_UINT32);
    bb_u64(b, 1ull << 62); bb_u32(b, 1);
}
static void fx_nested(bb *b) {
    hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, QT_GGUF_ARRAY); bb_u32(b, QT_GGUF_ARRAY);
    bb_u64(b, 1); bb_u32(b, QT_GGUF_UINT8); bb_u64(b, 1); bb_u8(b, 0);
}
static void fx_unknown_vtype(bb *b) { hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, 13); bb_u64(b, 0); }
static void fx_unknown_elem(bb *b) {
    hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, QT_GGUF_ARRAY); bb_u32(b, 77); bb_u64(b, 0);
}
static void fx_unknown_ttype(bb *b) { hdr(b, 3, 1, 2); base_kvs(b); tinfo(b, "a", 4, 0, 1, (uint64_t)32); data(b, 64); }
static void fx_unknown_ttype2(bb *b) { hdr(b, 3, 1, 2); base_kvs(b); tinfo(b, "a", 1000, 0, 1, (uint64_t)32); data(b, 64); }
static void fx_ndims0(bb *b) { hdr(b, 3, 1, 2); base_kvs(b); tinfo(b, "a", QT_TYPE_F32, 0, 0); data(b, 64); }
static void fx_ndims5(bb *b) {
    hdr(b, 3, 1, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 5, (uint64_t)1, (uint64_t)1, (uint64_t)1, (uint64_t)1, (uint64_t)1);
    data(b, 64);
}
static void fx_not_block(bb *b) {
    hdr(b, 3, 1, 2); base_kvs(b); tinfo(b, "a", QT_TYPE_Q4_K, 0, 2, (uint64_t)128, (uint64_t)2); data(b, 512);
}
static void fx_negative_ne(bb *b) { hdr(b, 3, 1, 2); base_kvs(b); tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)-8); data(b, 64); }
static void fx_ne_overflow(bb *b) {
    hdr(b, 3, 1, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 3, (uint64_t)1 << 40, (uint64_t)1 << 20, (uint64_t)1 << 10);
    data(b, 64);
}
static void fx_bytes_overflow(bb *b) {
    hdr(b, 3, 1, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F64, 0, 2, (uint64_t)1 << 31, (uint64_t)1 << 31);
    data(b, 64);
}
static void fx_offset_past_end(bb *b) {
    hdr(b, 3, 2, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)8);
    tinfo(b, "blk.0.attn_q.weight", QT_TYPE_Q8_0, 4096, 2, (uint64_t)32, (uint64_t)2);
    data(b, 32 + 68);
}
static void fx_misaligned(bb *b) {
    hdr(b, 3, 2, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)8);
    tinfo(b, "b", QT_TYPE_Q8_0, 40, 2, (uint64_t)32, (uint64_t)2);
    data(b, 40 + 68);
}
static void fx_dup_tensor(bb *b) {
    hdr(b, 3, 2, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)8);
    tinfo(b, "a", QT_TYPE_F32, 32, 1, (uint64_t)8);
    data(b, 64);
}
static void fx_dup_key(bb *b) { hdr(b, 3, 0, 3); base_kvs(b); kv_u32(b, "general.architecture", 1); }
static void fx_overlap(bb *b) {
    hdr(b, 3, 2, 2); base_kvs(b);
    tinfo(b, "a", QT_TYPE_F32, 0, 1, (uint64_t)64);
    tinfo(b, "b", QT_TYPE_F32, 32, 1, (uint64_t)8);
    data(b, 256);
}
static void fx_align0(bb *b) { hdr(b, 3, 0, 3); base_kvs(b); kv_u32(b, "general.alignment", 0); }
static void fx_align3(bb *b) { hdr(b, 3, 0, 3); base_kvs(b); kv_u32(b, "general.alignment", 3); }
static void fx_align_type(bb *b) { hdr(b, 3, 0, 3); base_kvs(b); kv_str(b, "general.alignment", "32"); }
static void fx_trunc_data(bb *b) { fx_valid(b); b->n -= 1; }

typedef struct {
    const char *name;
    void (*build)(bb *);
    const char *word;   // must appear in the error line
} fixture;

static const fixture fixtures[] = {
    { "bad-magic", fx_bad_magic, "magic" },
    { "empty", fx_empty, "magic" },
    { "version-1", fx_v1, "version 1" },
    { "version-99", fx_v99, "version 99" },
    { "big-endian", fx_big_endian, "big-endian" },
    { "huge-n-tensors", fx_huge_tensors, "tensor count" },
    { "huge-n-kv", fx_huge_kv, "kv count" },
    { "huge-string", fx_huge_str, "string length" },
    { "huge-key", fx_huge_key, "string length" },
    { "huge-array", fx_huge_arr, "array count" },
    { "huge-array-u32", fx_huge_arr_u32, "array count" },
    { "nested-array", fx_nested, "nested array" },
    { "unknown-vtype", fx_unknown_vtype, "unknown value type" },
    { "unknown-elem-type", fx_unknown_elem, "unknown array element type" },
    { "unknown-tensor-type", fx_unknown_ttype, "unknown tensor type 4" },
    { "unknown-tensor-type-1000", fx_unknown_ttype2, "unknown tensor type 1000" },
    { "n-dims-0", fx_ndims0, "n_dims 0" },
    { "n-dims-5", fx_ndims5, "n_dims 5" },
    { "not-block-multiple", fx_not_block, "block size" },
    { "negative-ne", fx_negative_ne, "negative" },
    { "ne-overflow", fx_ne_overflow, "overflow" },
    { "bytes-overflow", fx_bytes_overflow, "overflow" },
    { "offset-past-end", fx_offset_past_end, "'blk.0.attn_q.weight': data [offset 4096, 68 bytes] extends past end of file" },
    { "misaligned", fx_misaligned, "misaligned" },
    { "duplicate-tensor", fx_dup_tensor, "duplicate tensor name 'a'" },
    { "duplicate-key", fx_dup_key, "duplicate key 'general.architecture'" },
    { "overlap", fx_overlap, "overlap" },
    { "alignment-0", fx_align0, "alignment" },
    { "alignment-3", fx_align3, "power of two" },
    { "alignment-type", fx_align_type, "general.alignment" },
    { "truncated-data", fx_trunc_data, "past end" },
};

// Opens path, expects failure with exactly one error line naming the file and word.
static void expect_fail(const char *path, const char *what, const char *word) {
    err_reset();
    qt_gguf *g = qt_gguf_open(path);
    CHECK(g == NULL, "%s: opened a corrupt file", what);
    qt_gguf_close(g);
    if (word && getenv("QT_TEST_VERBOSE")) printf("%-28s %s\n", what, last_err);
    CHECK(n_err == 1, "%s: %d error lines (want exactly 1; last: %s)", what, n_err, last_err);
    CHECK(strstr(last_err, path) != NULL, "%s: error does not name the file: %s", what, last_err);
    if (word) CHECK(strstr(last_err, word) != NULL, "%s: error lacks '%s': %s", what, word, last_err);
}

static void test_fixtures(void) {
    // the base fixture itself is valid
    bb b = { 0 };
    fx_valid(&b);
    char p[256];
    snprintf(p, sizeof(p), "%s", tmp_path("valid.gguf"));
    write_bytes(p, b.p, b.n);
    err_reset();
    qt_gguf *g = qt_gguf_open(p);
    CHECK(g != NULL, "valid fixture failed: %s", last_err);
    if (g) {
        CHECK(qt_gguf_n_tensors(g) == 2 && qt_gguf_n_kv(g) == 2, "counts");
        const qt_gguf_tensor *t = qt_gguf_find_tensor(g, "b");
        CHECK(t && t->nbytes == 68 && t->ne[0] == 32 && t->ne[1] == 2 && t->n_dims == 2, "tensor b");
        CHECK(qt_gguf_data_offset(g) % 32 == 0, "data offset aligned");
    }
    qt_gguf_close(g);

    // every truncation of the valid file fails cleanly
    write_bytes(p, b.p, b.n);
    for (size_t cut = b.n; cut-- > 0;) {
        if (truncate(p, (off_t)cut) != 0) abort();
        char what[64];
        snprintf(what, sizeof(what), "valid fixture cut at %zu", cut);
        expect_fail(p, what, NULL);
    }
    free(b.p);

    for (size_t i = 0; i < QT_ARRAY_LEN(fixtures); i++) {
        bb f = { 0 };
        fixtures[i].build(&f);
        char name[128];
        snprintf(name, sizeof(name), "%s.gguf", fixtures[i].name);
        const char *fp = tmp_path(name);
        write_bytes(fp, f.p, f.n);
        expect_fail(fp, fixtures[i].name, fixtures[i].word);
        unlink(fp);
        free(f.p);
    }
    unlink(p);
}

// ---- (a) real files ----

static char *models_path(const char *rel) {
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", test_models_dir(), rel);
    return p;
}

static void test_stories(void) {
    const char *path = models_path("tinystories-260K/stories260K.gguf");
    err_reset();
    qt_gguf *g = qt_gguf_open(path);
    CHECK(g != NULL, "cannot open %s: %s", path, last_err);
    if (!g) return;
    CHECK(qt_gguf_version(g) == 3, "version %u", qt_gguf_version(g));
    CHECK(qt_gguf_n_tensors(g) == 48, "n_tensors %lld", (long long)qt_gguf_n_tensors(g));
    CHECK(qt_gguf_n_kv(g) == 19, "n_kv %lld", (long long)qt_gguf_n_kv(g));
    CHECK(qt_gguf_data_offset(g) == 14176, "data offset %zu", qt_gguf_data_offset(g));
    CHECK(qt_gguf_alignment(g) == 32, "alignment %zu", qt_gguf_alignment(g));
    CHECK(qt_gguf_find_kv(g, "general.alignment") == NULL, "no general.alignment key");

    uint32_t u = 0;
    CHECK(qt_gguf_get_u32(g, "llama.embedding_length", &u, true) == QT_OK && u == 64, "embd %u", u);
    CHECK(qt_gguf_get_u32(g, "llama.feed_forward_length", &u, true) == QT_OK && u == 172, "ffn %u", u);
    CHECK(qt_gguf_get_u32(g, "llama.block_count", &u, true) == QT_OK && u == 5, "layers %u", u);
    CHECK(qt_gguf_get_u32(g, "llama.context_length", &u, true) == QT_OK && u == 2048, "ctx %u", u);
    int64_t i64 = 0;
    CHECK(qt_gguf_get_i64(g, "tokenizer.ggml.padding_token_id", &i64, true) == QT_OK && i64 == 4294967295LL,
          "padding id %lld", (long long)i64);
    float eps = 0;
    CHECK(qt_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, true) == QT_OK && eps == 1e-5f,
          "eps %g", eps);
    const char *s = NULL;
    CHECK(qt_gguf_get_str(g, "general.architecture", &s, true) == QT_OK && s && strcmp(s, "llama") == 0, "arch");
    CHECK(qt_gguf_get_str(g, "tokenizer.ggml.model", &s, true) == QT_OK && s && strcmp(s, "llama") == 0, "tok model");
    // optional absent key leaves the value alone; required absent key errors
    float theta = 10000.0f;
    err_reset();
    CHECK(qt_gguf_get_f32(g, "llama.rope.freq_base", &theta, false) == QT_OK && theta == 10000.0f && n_err == 0,
          "optional missing");
    CHECK(qt_gguf_get_f32(g, "llama.rope.freq_base", &theta, true) == QT_ERR && n_err == 1 &&
          strstr(last_err, "missing key llama.rope.freq_base") && strstr(last_err, path), "required missing: %s", last_err);
    // type errors
    err_reset();
    CHECK(qt_gguf_get_u32(g, "general.architecture", &u, true) == QT_ERR &&
          strstr(last_err, "expected uint32, found string"), "type error: %s", last_err);
    bool bv;
    CHECK(qt_gguf_get_bool(g, "llama.block_count", &bv, true) == QT_ERR && strstr(last_err, "expected bool"), "bool: %s", last_err);

    const qt_gguf_kv *kv = NULL;
    CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.tokens", QT_GGUF_STRING, &kv, true) == QT_OK && kv &&
          kv->v.arr.n == 512, "tokens array");
    if (kv && kv->v.arr.n == 512) {
        qt_gguf_str t1 = kv->v.arr.strs[1], t3 = kv->v.arr.strs[3];
        CHECK(t1.len == 3 && memcmp(t1.data, "<s>", 3) == 0, "token 1 = <s>");
        CHECK(t3.len == 6 && memcmp(t3.data, "<0x00>", 6) == 0, "token 3 = <0x00>");
    }
    err_reset();
    CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.tokens", QT_GGUF_FLOAT32, &kv, true) == QT_ERR &&
          strstr(last_err, "expected array of float32, found array of string"), "arr type: %s", last_err);
    CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, &kv, true) == QT_OK && kv->v.arr.n == 512, "scores");
    CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.token_type", QT_GGUF_INT32, &kv, true) == QT_OK, "token_type");
    if (kv && kv->v.arr.type == QT_GGUF_INT32) {
        int count[8] = { 0 };
        for (uint64_t k = 0; k < kv->v.arr.n; k++) {
            int32_t v;
            memcpy(&v, kv->v.arr.data + 4 * k, 4);
            if (v >= 0 && v < 8) count[v]++;
        }
        CHECK(count[1] == 253 && count[2] == 1 && count[3] == 2 && count[6] == 256, "token type histogram");
    }

    const qt_gguf_tensor *te = qt_gguf_find_tensor(g, "token_embd.weight");
    const qt_gguf_tensor *out = qt_gguf_find_tensor(g, "output.weight");
    CHECK(te && te->type == QT_TYPE_F32 && te->n_dims == 2 && te->ne[0] == 64 && te->ne[1] == 512 &&
          te->nbytes == 64 * 512 * 4, "token_embd.weight");
    CHECK(out && out->nbytes == te->nbytes && memcmp(out->data, te->data, te->nbytes) == 0, "output == token_embd");
    const qt_gguf_tensor *wq = qt_gguf_find_tensor(g, "blk.4.attn_k.weight");
    CHECK(wq && wq->ne[0] == 64 && wq->ne[1] == 32, "blk.4.attn_k.weight shape");
    CHECK(qt_gguf_find_tensor(g, "blk.5.attn_k.weight") == NULL, "no blk.5");
    for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
        CHECK(qt_gguf_find_tensor(g, "") != t, "find empty");
        char nm[128];
        snprintf(nm, sizeof(nm), "%.*s", (int)t->name.len, t->name.data);
        CHECK(qt_gguf_find_tensor(g, nm) == t, "find %s", nm);
        CHECK((uintptr_t)t->data % 32 == 0, "tensor %s data aligned in memory", nm);
    }

    // (b') re-writing the file with our writer gives llama.cpp's bytes exactly
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_copy_kv(w, g);
    for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
        const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
        char nm[128];
        snprintf(nm, sizeof(nm), "%.*s", (int)t->name.len, t->name.data);
        qt_gguf_add_tensor(w, nm, t->type, t->n_dims, t->ne, t->data);
    }
    const char *copy = tmp_path("copy.gguf");
    CHECK(qt_gguf_write(w, copy) == QT_OK, "rewrite");
    qt_gguf_writer_free(w);
    size_t n1 = 0, n2 = 0;
    char *a = qt_read_file(path, &n1), *b = qt_read_file(copy, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "rewrite differs: %zu vs %zu bytes", n1, n2);
    if (a && b && n1 == n2) {
        size_t k = 0;
        while (k < n1 && a[k] == b[k]) k++;
        if (k < n1) fprintf(stderr, "first differing byte %zu\n", k);
    }
    qt_free(a);
    qt_free(b);
    unlink(copy);

    // the real file's header, cut at every length, fails cleanly; cuts in the data too
    size_t hdr_n = qt_gguf_data_offset(g);
    char *bytes = qt_read_file(path, &n1);
    const char *cutp = tmp_path("cut.gguf");
    // shrinking one file with truncate() is much cheaper than rewriting it each time
    write_bytes(cutp, bytes, hdr_n);
    for (size_t cut = hdr_n + 1; cut-- > 0;) {
        if (truncate(cutp, (off_t)cut) != 0) abort();
        char what[64];
        snprintf(what, sizeof(what), "stories260K cut at %zu", cut);
        expect_fail(cutp, what, NULL);
    }
    for (size_t cut = hdr_n + 1; cut < n1; cut += 65537) {
        write_bytes(cutp, bytes, cut);
        expect_fail(cutp, "stories260K data cut", "past end");
    }
    write_bytes(cutp, bytes, n1 - 1);
    expect_fail(cutp, "stories260K last byte cut", "past end");
    // version 1 on the real file
    bytes[4] = 1;
    write_bytes(cutp, bytes, n1);
    expect_fail(cutp, "stories260K version 1", "unsupported GGUF version 1");
    unlink(cutp);
    qt_free(bytes);
    qt_gguf_close(g);
}

static void test_vocab_files(void) {
    static const struct { const char *file; uint64_t n_vocab; const char *model; uint64_t n_merges; } v[] = {
        { "llama.cpp-vocab/ggml-vocab-llama-spm.gguf", 32000, "llama", 0 },
        { "llama.cpp-vocab/ggml-vocab-phi-3.gguf", 32064, "llama", 0 },
        { "llama.cpp-vocab/ggml-vocab-gpt-2.gguf", 50257, "gpt2", 50000 },
    };
    for (size_t i = 0; i < QT_ARRAY_LEN(v); i++) {
        const char *path = models_path(v[i].file);
        err_reset();
        qt_gguf *g = qt_gguf_open(path);
        CHECK(g != NULL, "cannot open %s: %s", path, last_err);
        if (!g) continue;
        CHECK(qt_gguf_version(g) == 3 && qt_gguf_n_tensors(g) == 0, "%s: version/tensors", v[i].file);
        const qt_gguf_kv *kv = NULL;
        CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.tokens", QT_GGUF_STRING, &kv, true) == QT_OK &&
              kv->v.arr.n == v[i].n_vocab, "%s: vocab size", v[i].file);
        const char *m = NULL;
        CHECK(qt_gguf_get_str(g, "tokenizer.ggml.model", &m, true) == QT_OK && m && strcmp(m, v[i].model) == 0,
              "%s: model", v[i].file);
        if (v[i].n_merges) {
            kv = NULL;
            CHECK(qt_gguf_get_arr(g, "tokenizer.ggml.merges", QT_GGUF_STRING, &kv, true) == QT_OK &&
                  kv->v.arr.n == v[i].n_merges, "%s: merges", v[i].file);
        }
        qt_gguf_close(g);
    }
}

// ---- (b) writer round trip ----

typedef struct { int calls; } lazy_ctx;
static int lazy_fill(void *ctx, int64_t idx, void *dst, size_t nbytes) {
    ((lazy_ctx *)ctx)->calls++;
    uint8_t *d = dst;
    for (size_t i = 0; i < nbytes; i++) d[i] = (uint8_t)(i * 13 + (size_t)idx);
    return QT_OK;
}
static int lazy_fail(void *ctx, int64_t idx, void *dst, size_t nbytes) {
    (void)ctx; (void)idx; (void)dst; (void)nbytes;
    return QT_ERR;
}

static void test_writer(void) {
    qt_gguf_writer *w = qt_gguf_writer_init();
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
    qt_gguf_set_val(w, "v.u8", QT_GGUF_UINT8, &u8);
    qt_gguf_set_val(w, "v.i8", QT_GGUF_INT8, &i8);
    qt_gguf_set_val(w, "v.u16", QT_GGUF_UINT16, &u16);
    qt_gguf_set_val(w, "v.i16", QT_GGUF_INT16, &i16);
    qt_gguf_set_u32(w, "v.u32", 4000000000u);
    qt_gguf_set_i32(w, "v.i32", -2000000000);
    qt_gguf_set_f32(w, "v.f32", 0.1f);
    qt_gguf_set_bool(w, "v.bool", true);
    qt_gguf_set_str(w, "v.str", "héllo \"world\"");
    qt_gguf_set_u64(w, "v.u64", 0xfedcba9876543210ull);
    qt_gguf_set_i64(w, "v.i64", INT64_MIN);
    qt_gguf_set_f64(w, "v.f64", 3.141592653589793);
    qt_gguf_set_u32(w, "v.replaced", 1);
    qt_gguf_set_str(w, "v.replaced", "second");   // replaces, keeps position
    qt_gguf_set_str(w, "v.empty", "");
    uint8_t au8[3] = { 1, 2, 255 }; int8_t ai8[2] = { -1, 5 }; uint16_t au16[2] = { 1, 65535 };
    int16_t ai16[2] = { -2, 7 }; uint32_t au32[3] = { 0, 1, 0xffffffffu }; int32_t ai32[2] = { -5, 5 };
    float af32[4] = { 1.5f, -0.0f, 1e30f, -3 }; uint8_t abool[2] = { 1, 0 };
    uint64_t au64[2] = { 1, UINT64_MAX }; int64_t ai64[2] = { INT64_MIN, 42 }; double af64[2] = { 1e-300, -2.5 };
    qt_gguf_set_arr(w, "a.u8", QT_GGUF_UINT8, au8, 3);
    qt_gguf_set_arr(w, "a.i8", QT_GGUF_INT8, ai8, 2);
    qt_gguf_set_arr(w, "a.u16", QT_GGUF_UINT16, au16, 2);
    qt_gguf_set_arr(w, "a.i16", QT_GGUF_INT16, ai16, 2);
    qt_gguf_set_arr(w, "a.u32", QT_GGUF_UINT32, au32, 3);
    qt_gguf_set_arr(w, "a.i32", QT_GGUF_INT32, ai32, 2);
    qt_gguf_set_arr(w, "a.f32", QT_GGUF_FLOAT32, af32, 4);
    qt_gguf_set_arr(w, "a.bool", QT_GGUF_BOOL, abool, 2);
    qt_gguf_set_arr(w, "a.u64", QT_GGUF_UINT64, au64, 2);
    qt_gguf_set_arr(w, "a.i64", QT_GGUF_INT64, ai64, 2);
    qt_gguf_set_arr(w, "a.f64", QT_GGUF_FLOAT64, af64, 2);
    qt_gguf_set_arr(w, "a.empty", QT_GGUF_UINT32, NULL, 0);
    const char *strs[3] = { "a", "", "ccc" };
    qt_gguf_set_arr_str(w, "a.str", strs, 3);

    // tensors: sizes from the type traits (F32, F16, Q8_0, Q4_K) plus a lazy one
    float f32[8 * 3];
    for (int i = 0; i < 24; i++) f32[i] = (float)i * 0.25f - 3;
    uint16_t f16[16];
    for (int i = 0; i < 16; i++) f16[i] = qt_fp32_to_fp16((float)i);
    static uint8_t q8[2 * 2 * 34], q4k[3 * 144];
    for (size_t i = 0; i < sizeof(q8); i++) q8[i] = (uint8_t)(i * 3);
    for (size_t i = 0; i < sizeof(q4k); i++) q4k[i] = (uint8_t)(i * 5 + 1);
    int64_t ne_f32[2] = { 8, 3 }, ne_f16[1] = { 16 }, ne_q8[2] = { 64, 2 }, ne_q4k[2] = { 256, 3 };
    int64_t ne_4d[4] = { 32, 2, 1, 3 }, ne_empty[2] = { 0, 4 };
    qt_gguf_add_tensor(w, "t.f32", QT_TYPE_F32, 2, ne_f32, f32);
    qt_gguf_add_tensor(w, "t.f16", QT_TYPE_F16, 1, ne_f16, f16);
    qt_gguf_add_tensor(w, "t.q8_0", QT_TYPE_Q8_0, 2, ne_q8, q8);
    qt_gguf_add_tensor(w, "t.q4_k", QT_TYPE_Q4_K, 2, ne_q4k, q4k);
    qt_gguf_add_tensor(w, "t.empty", QT_TYPE_F32, 2, ne_empty, NULL);
    lazy_ctx lc = { 0 };
    qt_gguf_add_tensor_lazy(w, "t.lazy", QT_TYPE_Q4_0, 4, ne_4d, lazy_fill, &lc);
    CHECK(qt_row_size(QT_TYPE_Q8_0, 64) == 68 && qt_row_size(QT_TYPE_Q4_K, 256) == 144, "row sizes");

    const char *p = tmp_path("rt.gguf");
    CHECK(qt_gguf_write(w, p) == QT_OK, "write");
    CHECK(lc.calls == 1, "lazy fill called %d times", lc.calls);
    err_reset();
    qt_gguf *g = qt_gguf_open(p);
    CHECK(g != NULL, "reopen: %s", last_err);
    if (g) {
        CHECK(qt_gguf_version(g) == 3 && qt_gguf_alignment(g) == 32, "version/alignment");
        CHECK(qt_gguf_n_kv(g) == 27, "n_kv %lld", (long long)qt_gguf_n_kv(g));
        const qt_gguf_kv *kv;
#define KV(k, t) ((kv = qt_gguf_find_kv(g, k)) != NULL && kv->type == (t))
        CHECK(KV("v.u8", QT_GGUF_UINT8) && kv->v.u64 == 200, "u8");
        CHECK(KV("v.i8", QT_GGUF_INT8) && kv->v.i64 == -100, "i8");
        CHECK(KV("v.u16", QT_GGUF_UINT16) && kv->v.u64 == 60000, "u16");
        CHECK(KV("v.i16", QT_GGUF_INT16) && kv->v.i64 == -30000, "i16");
        CHECK(KV("v.u32", QT_GGUF_UINT32) && kv->v.u64 == 4000000000u, "u32");
        CHECK(KV("v.i32", QT_GGUF_INT32) && kv->v.i64 == -2000000000, "i32");
        CHECK(KV("v.f32", QT_GGUF_FLOAT32) && (float)kv->v.f64 == 0.1f, "f32");
        CHECK(KV("v.bool", QT_GGUF_BOOL) && kv->v.b, "bool");
        CHECK(KV("v.str", QT_GGUF_STRING) && kv->v.str.len == strlen("héllo \"world\"") &&
              memcmp(kv->v.str.data, "héllo \"world\"", kv->v.str.len) == 0, "str");
        CHECK(KV("v.u64", QT_GGUF_UINT64) && kv->v.u64 == 0xfedcba9876543210ull, "u64");
        CHECK(KV("v.i64", QT_GGUF_INT64) && kv->v.i64 == INT64_MIN, "i64");
        CHECK(KV("v.f64", QT_GGUF_FLOAT64) && kv->v.f64 == 3.141592653589793, "f64");
        CHECK(KV("v.replaced", QT_GGUF_STRING) && qt_gguf_kv_at(g, 12) == kv, "replaced in place");
        const char *s = NULL;
        CHECK(qt_gguf_get_str(g, "v.empty", &s, true) == QT_OK && s && s[0] == 0, "empty str");
        // integer getters accept any integer type whose value fits
        uint32_t u = 0; int64_t i = 0; float f = 0; bool bv = false;
        CHECK(qt_gguf_get_u32(g, "v.u8", &u, true) == QT_OK && u == 200, "u8 as u32");
        CHECK(qt_gguf_get_u32(g, "v.u16", &u, true) == QT_OK && u == 60000, "u16 as u32");
        CHECK(qt_gguf_get_i64(g, "v.i16", &i, true) == QT_OK && i == -30000, "i16 as i64");
        CHECK(qt_gguf_get_i64(g, "v.i64", &i, true) == QT_OK && i == INT64_MIN, "i64");
        err_reset();
        CHECK(qt_gguf_get_u32(g, "v.i8", &u, true) == QT_ERR && strstr(last_err, "does not fit"), "i8<0 as u32: %s", last_err);
        CHECK(qt_gguf_get_u32(g, "v.u64", &u, true) == QT_ERR && strstr(last_err, "does not fit"), "u64 as u32");
        CHECK(qt_gguf_get_i64(g, "v.u64", &i, true) == QT_ERR && strstr(last_err, "does not fit"), "u64 as i64");
        CHECK(qt_gguf_get_f32(g, "v.f64", &f, true) == QT_OK && f == 3.1415927f, "f64 as f32");
        CHECK(qt_gguf_get_bool(g, "v.bool", &bv, true) == QT_OK && bv, "bool getter");
        CHECK(qt_gguf_get_str(g, "a.str", &s, true) == QT_ERR && strstr(last_err, "expected string, found array of string"),
              "array as string: %s", last_err);

#define ARR(k, t, src, cnt) (KV(k, QT_GGUF_ARRAY) && kv->v.arr.type == (t) && kv->v.arr.n == (cnt) && \
                           memcmp(kv->v.arr.data, src, sizeof(src)) == 0)
        CHECK(ARR("a.u8", QT_GGUF_UINT8, au8, 3), "a.u8");
        CHECK(ARR("a.i8", QT_GGUF_INT8, ai8, 2), "a.i8");
        CHECK(ARR("a.u16", QT_GGUF_UINT16, au16, 2), "a.u16");
        CHECK(ARR("a.i16", QT_GGUF_INT16, ai16, 2), "a.i16");
        CHECK(ARR("a.u32", QT_GGUF_UINT32, au32, 3), "a.u32");
        CHECK(ARR("a.i32", QT_GGUF_INT32, ai32, 2), "a.i32");
        CHECK(ARR("a.f32", QT_GGUF_FLOAT32, af32, 4), "a.f32");
        CHECK(ARR("a.bool", QT_GGUF_BOOL, abool, 2), "a.bool");
        CHECK(ARR("a.u64", QT_GGUF_UINT64, au64, 2), "a.u64");
        CHECK(ARR("a.i64", QT_GGUF_INT64, ai64, 2), "a.i64");
        CHECK(ARR("a.f64", QT_GGUF_FLOAT64, af64, 2), "a.f64");
        CHECK(KV("a.empty", QT_GGUF_ARRAY) && kv->v.arr.n == 0 && kv->v.arr.type == QT_GGUF_UINT32, "a.empty");
        CHECK(KV("a.str", QT_GGUF_ARRAY) && kv->v.arr.type == QT_GGUF_STRING && kv->v.arr.n == 3 &&
              kv->v.arr.strs[0].len == 1 && kv->v.arr.strs[1].len == 0 && kv->v.arr.strs[2].len == 3 &&
              memcmp(kv->v.arr.strs[2].data, "ccc", 3) == 0, "a.str");

        CHECK(qt_gguf_n_tensors(g) == 6, "n_tensors");
        const qt_gguf_tensor *t;
        CHECK((t = qt_gguf_find_tensor(g, "t.f32")) && t->type == QT_TYPE_F32 && t->n_dims == 2 &&
              t->ne[0] == 8 && t->ne[1] == 3 && t->ne[2] == 1 && t->nbytes == sizeof(f32) &&
              memcmp(t->data, f32, sizeof(f32)) == 0, "t.f32");
        CHECK((t = qt_gguf_find_tensor(g, "t.f16")) && t->type == QT_TYPE_F16 && t->nbytes == sizeof(f16) &&
              memcmp(t->data, f16, sizeof(f16)) == 0, "t.f16");
        CHECK((t = qt_gguf_find_tensor(g, "t.q8_0")) && t->type == QT_TYPE_Q8_0 && t->nbytes == sizeof(q8) &&
              memcmp(t->data, q8, sizeof(q8)) == 0, "t.q8_0");
        CHECK((t = qt_gguf_find_tensor(g, "t.q4_k")) && t->type == QT_TYPE_Q4_K && t->nbytes == sizeof(q4k) &&
              memcmp(t->data, q4k, sizeof(q4k)) == 0, "t.q4_k");
        CHECK((t = qt_gguf_find_tensor(g, "t.empty")) && t->nbytes == 0 && t->ne[0] == 0 && t->ne[1] == 4, "t.empty");
        t = qt_gguf_find_tensor(g, "t.lazy");
        CHECK(t && t->type == QT_TYPE_Q4_0 && t->n_dims == 4 && t->ne[3] == 3 && t->nbytes == 6 * 18, "t.lazy shape");
        if (t && t->nbytes == 6 * 18) {
            uint8_t expect[6 * 18];
            lazy_fill(&lc, 5, expect, sizeof(expect));
            CHECK(memcmp(t->data, expect, sizeof(expect)) == 0, "t.lazy data");
        }
        for (int64_t k = 0; k < qt_gguf_n_tensors(g); k++)
            CHECK(qt_gguf_tensor_at(g, k)->offset % 32 == 0, "offset aligned");
    }
    qt_gguf_close(g);

    // a failing fill aborts the write and leaves nothing behind
    qt_gguf_add_tensor_lazy(w, "t.fail", QT_TYPE_F32, 1, ne_f16, lazy_fail, NULL);
    const char *p2 = tmp_path("fail.gguf");
    err_reset();
    CHECK(qt_gguf_write(w, p2) == QT_ERR && strstr(last_err, "t.fail"), "failing fill: %s", last_err);
    CHECK(access(p2, F_OK) != 0, "failed write left a file");
    qt_gguf_writer_free(w);

    // general.alignment set by the caller is honoured
    w = qt_gguf_writer_init();
    qt_gguf_set_u32(w, "general.alignment", 64);
    qt_gguf_add_tensor(w, "x", QT_TYPE_F32, 1, ne_f16, f32);
    qt_gguf_add_tensor(w, "y", QT_TYPE_F32, 1, ne_f16, f32);
    CHECK(qt_gguf_write(w, p) == QT_OK, "write align 64");
    qt_gguf_writer_free(w);
    g = qt_gguf_open(p);
    CHECK(g && qt_gguf_alignment(g) == 64 && qt_gguf_data_offset(g) % 64 == 0 &&
          qt_gguf_find_tensor(g, "y")->offset == 64, "alignment 64");
    qt_gguf_close(g);
    unlink(p);
}

// ---- random corruption: never crash, fail with one line or succeed ----
static void test_random_corruption(void) {
    bb b = { 0 };
    fx_valid(&b);
    // plus a string array so array paths get corrupted too
    qt_rng r;
    qt_rng_seed(&r, 1234);
    const char *p = tmp_path("rand.gguf");
    int n_ok = 0, n_bad = 0, n_multi = 0;
    for (int it = 0; it < 3000; it++) {
        uint8_t *c = malloc(b.n);
        memcpy(c, b.p, b.n);
        int n_mut = 1 + (int)(qt_rng_u64(&r) % 4);
        for (int k = 0; k < n_mut; k++) {
            size_t pos = (size_t)(qt_rng_u64(&r) % b.n);
            uint64_t mode = qt_rng_u64(&r) % 3;
            if (mode == 0) c[pos] ^= (uint8_t)(1u << (qt_rng_u64(&r) % 8));
            else if (mode == 1) c[pos] = (uint8_t)qt_rng_u64(&r);
            else c[pos] = 0xff;
        }
        size_t n = qt_rng_u64(&r) % 8 == 0 ? (size_t)(qt_rng_u64(&r) % b.n) : b.n;
        write_bytes(p, c, n);
        err_reset();
        qt_gguf *g = qt_gguf_open(p);
        if (g) {
            n_ok++;
            // whatever opened must be internally consistent
            for (int64_t i = 0; i < qt_gguf_n_tensors(g); i++) {
                const qt_gguf_tensor *t = qt_gguf_tensor_at(g, i);
                volatile uint8_t sum = 0;
                for (size_t k = 0; k < t->nbytes; k++) sum += ((const uint8_t *)t->data)[k];
                (void)sum;
            }
        } else {
            n_bad++;
            if (n_err != 1) n_multi++;
        }
        qt_gguf_close(g);
        free(c);
    }
    CHECK(n_multi == 0, "%d corrupt opens logged other than exactly one error line", n_multi);
    CHECK(n_bad > 0, "random corruption never failed (%d ok)", n_ok);
    printf("random corruption: %d opened, %d rejected\n", n_ok, n_bad);
    unlink(p);
    free(b.p);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/qt-test-gguf-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    qt_log_set_sink(sink, NULL);
    test_stories();
    test_vocab_files();
    test_writer();
    test_fixtures();
    test_random_corruption();
    qt_log_set_sink(NULL, NULL);
    CHECK(rmdir(tmpdir) == 0, "temp dir %s not empty or not removable", tmpdir);
    TEST_END();
}
