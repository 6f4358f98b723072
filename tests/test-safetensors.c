// test-safetensors.c: the safetensors reader and writer.
// Real file: the derived HF layout of stories260K (README in ../shared/models)
// matches the GGUF tensors (v_proj unchanged, q_proj rows permuted per head).
// Writer round trip, a sharded folder (index.json + 2 shards) opened by folder
// path, and corrupt fixtures that each fail with one error line naming the file
// and the problem; every truncation of a real header fails cleanly; random
// byte corruption never crashes (run under ASan).
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "test.h"

static int n_err;
static char last_err[2048];
static void sink(const char *line, void *ud) {
    (void)ud;
    if (strncmp(line, "error: ", 7) != 0) return;
    n_err++;
    snprintf(last_err, sizeof(last_err), "%s", line);
}
static void err_reset(void) { n_err = 0; last_err[0] = 0; }

static char tmpdir[64];
static char *tmp_path(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", tmpdir, name);
    return p[k];
}
static void write_bytes(const char *path, const void *p, size_t n) {
    unlink(path);   // not O_TRUNC: truncating a file with data makes ext4 flush it
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); abort(); }
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}
static char *models_path(const char *rel) {
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", test_models_dir(), rel);
    return p;
}

// u64 header length (given, or the JSON's when hlen == UINT64_MAX), JSON, data bytes.
static void make_st(const char *path, uint64_t hlen, const char *json, size_t n_data) {
    size_t jn = strlen(json);
    if (hlen == UINT64_MAX) hlen = jn;
    size_t n = 8 + jn + n_data;
    uint8_t *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hlen >> 8 * i);
    memcpy(b + 8, json, jn);
    for (size_t i = 0; i < n_data; i++) b[8 + jn + i] = (uint8_t)i;
    write_bytes(path, b, n);
    free(b);
}

static void expect_fail(const char *path, const char *name_in_error, const char *what, const char *word) {
    err_reset();
    qt_st_set *s = qt_st_open(path);
    CHECK(s == NULL, "%s: opened a corrupt file", what);
    qt_st_close(s);
    if (word && getenv("QT_TEST_VERBOSE")) printf("%-22s %s\n", what, last_err);
    CHECK(n_err == 1, "%s: %d error lines (want exactly 1; last: %s)", what, n_err, last_err);
    CHECK(strstr(last_err, name_in_error) != NULL, "%s: error does not name %s: %s", what, name_in_error, last_err);
    if (word) CHECK(strstr(last_err, word) != NULL, "%s: error lacks '%s': %s", what, word, last_err);
}

#define T1 "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
static const struct { const char *name; uint64_t hlen; const char *json; size_t n_data; const char *word; } fixtures[] = {
    { "valid-but-hlen-past-end", 1000, "{" T1 "}", 16, "past the end" },
    { "hlen-huge", 1ull << 40, "{" T1 "}", 16, "too large" },
    { "invalid-json", UINT64_MAX, "{\"a\":{\"dtype\":", 16, "invalid JSON" },
    { "trailing-garbage", UINT64_MAX, "{" T1 "}xx", 16, "trailing" },
    { "not-object", UINT64_MAX, "[1,2,3]", 16, "not an object" },
    { "entry-not-object", UINT64_MAX, "{\"a\":[1]}", 16, "not a JSON object" },
    { "missing-dtype", UINT64_MAX, "{\"a\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "dtype" },
    { "unknown-dtype", UINT64_MAX, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "unsupported dtype 'F8_E4M3'" },
    { "missing-shape", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16, "shape" },
    { "shape-bytes-mismatch", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16, "mismatch" },
    { "offsets-out-of-range", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", 16, "out of range" },
    { "begin-gt-end", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16, "begin 8 > end 4" },
    { "overlap", UINT64_MAX, "{" T1 ",\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[12,16]}}", 16, "overlap" },
    { "overlap-contained", UINT64_MAX, "{\"a\":{\"dtype\":\"I8\",\"shape\":[16],\"data_offsets\":[0,16]},"
      "\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[4,4]},\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[8,10]}}",
      16, "overlap" },
    { "negative-shape", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16, "negative" },
    { "fractional-shape", UINT64_MAX, "{\"a\":{\"dtype\":\"I8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 16, "shape[0]" },
    { "five-dims", UINT64_MAX, "{\"a\":{\"dtype\":\"I8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 16, "5 dims" },
    { "offsets-three", UINT64_MAX, "{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 16, "data_offsets" },
    { "offsets-huge", UINT64_MAX, "{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 16, "data_offsets" },
    { "shape-overflow", UINT64_MAX, "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 16, "overflow" },
    { "bytes-overflow", UINT64_MAX, "{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 16, "mismatch" },
    { "duplicate-name", UINT64_MAX, "{" T1 ",\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 32,
      "duplicate tensor name 'a'" },
};

static void test_fixtures(void) {
    for (size_t i = 0; i < QT_ARRAY_LEN(fixtures); i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s.safetensors", fixtures[i].name);
        const char *p = tmp_path(name);
        make_st(p, fixtures[i].hlen, fixtures[i].json, fixtures[i].n_data);
        expect_fail(p, p, fixtures[i].name, fixtures[i].word);
        unlink(p);
    }
    const char *p = tmp_path("tiny.safetensors");
    write_bytes(p, "\x10\0\0\0", 4);
    expect_fail(p, p, "too-small", "too small");
    // the valid base of the fixtures opens
    make_st(p, UINT64_MAX, "{\"__metadata__\":{\"format\":\"pt\"}," T1 "}", 16);
    err_reset();
    qt_st_set *s = qt_st_open(p);
    CHECK(s && qt_st_n_tensors(s) == 1 && qt_st_find(s, "a")->nbytes == 16, "valid base: %s", last_err);
    qt_st_close(s);
    unlink(p);
}

// ---- real file ----
static void test_real(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s", models_path("tinystories-260K/hf/model.safetensors"));
    err_reset();
    qt_st_set *s = qt_st_open(path);
    CHECK(s != NULL, "cannot open %s: %s", path, last_err);
    if (!s) return;
    CHECK(qt_st_n_tensors(s) == 47, "n_tensors %lld", (long long)qt_st_n_tensors(s));
    const qt_st_tensor *e = qt_st_find(s, "model.embed_tokens.weight");
    CHECK(e && e->type == QT_TYPE_F32 && e->n_dims == 2 && e->shape[0] == 512 && e->shape[1] == 64 &&
          e->nbytes == 512 * 64 * 4, "embed_tokens");
    CHECK(qt_st_find(s, "lm_head.weight") == NULL, "tied: no lm_head");
    for (int64_t i = 0; i < qt_st_n_tensors(s); i++) {
        const qt_st_tensor *t = qt_st_tensor_at(s, i);
        CHECK(qt_st_find(s, t->name) == t && t->file_index == 0, "find %s", t->name);
    }

    const char *gpath = models_path("tinystories-260K/stories260K.gguf");
    qt_gguf *g = qt_gguf_open(gpath);
    CHECK(g != NULL, "cannot open %s", gpath);
    if (g && e) {
        const qt_gguf_tensor *te = qt_gguf_find_tensor(g, "token_embd.weight");
        CHECK(te && te->nbytes == e->nbytes && memcmp(te->data, e->data, e->nbytes) == 0, "embed == token_embd");
        const qt_st_tensor *n = qt_st_find(s, "model.norm.weight");
        const qt_gguf_tensor *gn = qt_gguf_find_tensor(g, "output_norm.weight");
        CHECK(n && gn && n->n_dims == 1 && n->nbytes == gn->nbytes && memcmp(n->data, gn->data, n->nbytes) == 0, "norm");
        for (int il = 0; il < 5; il++) {
            char hn[96], gnm[96];
            snprintf(hn, sizeof(hn), "model.layers.%d.self_attn.v_proj.weight", il);
            snprintf(gnm, sizeof(gnm), "blk.%d.attn_v.weight", il);
            const qt_st_tensor *v = qt_st_find(s, hn);
            const qt_gguf_tensor *gv = qt_gguf_find_tensor(g, gnm);
            CHECK(v && gv && v->shape[0] == 32 && v->shape[1] == 64 && v->nbytes == gv->nbytes &&
                  memcmp(v->data, gv->data, v->nbytes) == 0, "%s", hn);
            // q_proj: within each head of 8 rows, HF row j is GGUF row 2j (j < 4) or 2(j-4)+1
            snprintf(hn, sizeof(hn), "model.layers.%d.self_attn.q_proj.weight", il);
            snprintf(gnm, sizeof(gnm), "blk.%d.attn_q.weight", il);
            const qt_st_tensor *q = qt_st_find(s, hn);
            const qt_gguf_tensor *gq = qt_gguf_find_tensor(g, gnm);
            int bad = 0;
            if (q && gq && q->nbytes == 64 * 64 * 4 && gq->nbytes == q->nbytes) {
                for (int r = 0; r < 64; r++) {
                    int h = r / 8, j = r % 8, gr = h * 8 + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
                    bad += memcmp((const float *)q->data + r * 64, (const float *)gq->data + gr * 64, 64 * 4) != 0;
                }
            } else {
                bad = -1;
            }
            CHECK(bad == 0, "%s permuted rows: %d differ", hn, bad);
        }
    }
    qt_gguf_close(g);
    qt_st_close(s);

    // every cut of the header (and some in the data) fails cleanly
    size_t n;
    char *bytes = qt_read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (uint8_t)bytes[i];
    const char *cut = tmp_path("cut.safetensors");
    write_bytes(cut, bytes, 8 + hlen);
    for (size_t c = 8 + hlen + 1; c-- > 0;) {
        if (truncate(cut, (off_t)c) != 0) abort();
        char what[64];
        snprintf(what, sizeof(what), "header cut at %zu", c);
        expect_fail(cut, cut, what, NULL);
    }
    write_bytes(cut, bytes, n - 1);
    expect_fail(cut, cut, "last byte cut", "out of range");
    unlink(cut);
    qt_free(bytes);
}

// ---- writer round trip ----
static void test_writer(void) {
    float f32[6] = { 1, -2, 3.5f, 0, 1e-20f, -1e20f };
    uint16_t f16[4], bf16[4];
    for (int i = 0; i < 4; i++) { f16[i] = qt_fp32_to_fp16(i * 0.5f); bf16[i] = qt_fp32_to_bf16(i * -1.25f); }
    double f64[2] = { 1e300, -0.5 };
    int8_t i8[3] = { -128, 0, 127 };
    int16_t i16[2] = { -32768, 32767 };
    int32_t i32[2] = { INT32_MIN, 7 };
    int64_t i64[2] = { INT64_MIN, INT64_MAX };
    float scalar[1] = { 42 };
    int64_t s23[2] = { 2, 3 }, s4[1] = { 4 }, s2[1] = { 2 }, s3[1] = { 3 }, s0[2] = { 0, 5 }, s4d[4] = { 1, 2, 1, 2 };
    qt_st_writer *w = qt_st_writer_init();
    qt_st_writer_meta(w, "format", "pt");
    qt_st_writer_meta(w, "note", "quote \" and \\ backslash");
    // added out of order: the header must come out sorted by name
    qt_st_writer_add(w, "z.f32", QT_TYPE_F32, 2, s23, f32);
    qt_st_writer_add(w, "a.f16", QT_TYPE_F16, 1, s4, f16);
    qt_st_writer_add(w, "m.bf16", QT_TYPE_BF16, 4, s4d, bf16);
    qt_st_writer_add(w, "b.f64", QT_TYPE_F64, 1, s2, f64);
    qt_st_writer_add(w, "c.i8", QT_TYPE_I8, 1, s3, i8);
    qt_st_writer_add(w, "d.i16", QT_TYPE_I16, 1, s2, i16);
    qt_st_writer_add(w, "e.i32", QT_TYPE_I32, 1, s2, i32);
    qt_st_writer_add(w, "f.i64", QT_TYPE_I64, 1, s2, i64);
    qt_st_writer_add(w, "g.scalar", QT_TYPE_F32, 0, NULL, scalar);
    qt_st_writer_add(w, "h.empty", QT_TYPE_F32, 2, s0, NULL);
    qt_st_writer_add(w, "name \"with\" quotes\n", QT_TYPE_I8, 1, s3, i8);
    const char *p = tmp_path("rt.safetensors");
    CHECK(qt_st_write(w, p) == QT_OK, "write");
    qt_st_writer_free(w);

    // raw header: padded to 8 with spaces, keys sorted, metadata kept
    size_t n;
    char *raw = qt_read_file(p, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (uint8_t)raw[i];
    CHECK(hlen % 8 == 0 && 8 + hlen <= n, "header length %llu", (unsigned long long)hlen);
    cJSON *j = cJSON_ParseWithLength(raw + 8, hlen);
    CHECK(j != NULL, "header JSON parses");
    if (j) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
        const cJSON *note = m ? cJSON_GetObjectItemCaseSensitive(m, "note") : NULL;
        CHECK(cJSON_IsString(note) && strcmp(note->valuestring, "quote \" and \\ backslash") == 0, "metadata kept");
        const char *prev = "";
        int sorted = 1;
        for (const cJSON *e = j->child; e; e = e->next) {
            if (strcmp(e->string, "__metadata__") == 0) continue;
            if (strcmp(prev, e->string) > 0) sorted = 0;
            prev = e->string;
        }
        CHECK(sorted, "header keys sorted");
        cJSON_Delete(j);
    }
    CHECK(raw[8 + hlen - 1] == '}' || raw[8 + hlen - 1] == ' ', "padding");
    qt_free(raw);

    err_reset();
    qt_st_set *s = qt_st_open(p);
    CHECK(s != NULL, "reopen: %s", last_err);
    if (s) {
        CHECK(qt_st_n_tensors(s) == 11, "n %lld", (long long)qt_st_n_tensors(s));
        const qt_st_tensor *t;
#define SAME(nm, ty, src, nd) ((t = qt_st_find(s, nm)) && t->type == (ty) && t->n_dims == (nd) && \
                               t->nbytes == sizeof(src) && memcmp(t->data, src, sizeof(src)) == 0)
        CHECK(SAME("z.f32", QT_TYPE_F32, f32, 2) && t->shape[0] == 2 && t->shape[1] == 3, "z.f32");
        CHECK(SAME("a.f16", QT_TYPE_F16, f16, 1), "a.f16");
        CHECK(SAME("m.bf16", QT_TYPE_BF16, bf16, 4) && t->shape[1] == 2 && t->shape[3] == 2, "m.bf16");
        CHECK(SAME("b.f64", QT_TYPE_F64, f64, 1), "b.f64");
        CHECK(SAME("c.i8", QT_TYPE_I8, i8, 1), "c.i8");
        CHECK(SAME("d.i16", QT_TYPE_I16, i16, 1), "d.i16");
        CHECK(SAME("e.i32", QT_TYPE_I32, i32, 1), "e.i32");
        CHECK(SAME("f.i64", QT_TYPE_I64, i64, 1), "f.i64");
        CHECK(SAME("g.scalar", QT_TYPE_F32, scalar, 0) && t->nbytes == 4, "g.scalar");
        CHECK((t = qt_st_find(s, "h.empty")) && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 5, "h.empty");
        CHECK(SAME("name \"with\" quotes\n", QT_TYPE_I8, i8, 1), "escaped name");
    }
    qt_st_close(s);
    unlink(p);
}

// ---- folders ----
static void test_folders(void) {
    float a[4] = { 1, 2, 3, 4 }, b[2] = { 5, 6 }, c[3] = { 7, 8, 9 };
    int64_t s4[1] = { 4 }, s2[1] = { 2 }, s3[1] = { 3 };
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/sharded", tmpdir);
    mkdir(dir, 0700);
    qt_st_writer *w = qt_st_writer_init();
    qt_st_writer_add(w, "w.a", QT_TYPE_F32, 1, s4, a);
    qt_st_writer_add(w, "w.b", QT_TYPE_F32, 1, s2, b);
    char p1[300], p2[300], pi[300];
    snprintf(p1, sizeof(p1), "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof(p2), "%s/model-00002-of-00002.safetensors", dir);
    snprintf(pi, sizeof(pi), "%s/model.safetensors.index.json", dir);
    CHECK(qt_st_write(w, p1) == QT_OK, "shard 1");
    qt_st_writer_free(w);
    w = qt_st_writer_init();
    qt_st_writer_add(w, "w.c", QT_TYPE_F32, 1, s3, c);
    CHECK(qt_st_write(w, p2) == QT_OK, "shard 2");
    qt_st_writer_free(w);
    const char *index = "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
                        "\"w.a\":\"model-00001-of-00002.safetensors\","
                        "\"w.c\":\"model-00002-of-00002.safetensors\","
                        "\"w.b\":\"model-00001-of-00002.safetensors\"}}";
    write_bytes(pi, index, strlen(index));
    err_reset();
    qt_st_set *s = qt_st_open(dir);
    CHECK(s != NULL, "sharded folder: %s", last_err);
    if (s) {
        CHECK(qt_st_n_tensors(s) == 3, "3 tensors");
        const qt_st_tensor *ta = qt_st_find(s, "w.a"), *tb = qt_st_find(s, "w.b"), *tc = qt_st_find(s, "w.c");
        CHECK(ta && tb && tc && ta->file_index == tb->file_index && tc->file_index != ta->file_index, "file index");
        CHECK(ta && memcmp(ta->data, a, sizeof(a)) == 0 && tb && memcmp(tb->data, b, sizeof(b)) == 0 &&
              tc && memcmp(tc->data, c, sizeof(c)) == 0, "shard data");
    }
    qt_st_close(s);

    // a name listed in the index but absent in its shard
    const char *bad1 = "{\"weight_map\":{\"w.a\":\"model-00001-of-00002.safetensors\","
                       "\"w.c\":\"model-00001-of-00002.safetensors\"}}";
    write_bytes(pi, bad1, strlen(bad1));
    expect_fail(dir, "index.json", "index-name-absent", "'w.c' is listed in the index but missing from shard");
    // a shard that does not exist
    const char *bad2 = "{\"weight_map\":{\"w.a\":\"model-00001-of-00002.safetensors\","
                       "\"w.x\":\"model-00009-of-00009.safetensors\"}}";
    write_bytes(pi, bad2, strlen(bad2));
    expect_fail(dir, "index.json", "index-missing-shard", "shard 'model-00009-of-00009.safetensors'");
    const char *bad3 = "{\"weight_map\":{\"w.a\":\"../model-00001-of-00002.safetensors\"}}";
    write_bytes(pi, bad3, strlen(bad3));
    expect_fail(dir, "index.json", "index-path-escape", "bad shard file name");
    write_bytes(pi, "{\"weight_map\":", 14);
    expect_fail(dir, "index.json", "index-invalid-json", "invalid JSON");
    write_bytes(pi, "{\"metadata\":{}}", 15);
    expect_fail(dir, "index.json", "index-no-weight-map", "weight_map");
    unlink(pi);
    unlink(p1);
    unlink(p2);
    expect_fail(dir, dir, "empty-folder", "neither");

    // single-file folder
    w = qt_st_writer_init();
    qt_st_writer_add(w, "w.a", QT_TYPE_F32, 1, s4, a);
    snprintf(p1, sizeof(p1), "%s/model.safetensors", dir);
    CHECK(qt_st_write(w, p1) == QT_OK, "model.safetensors");
    qt_st_writer_free(w);
    s = qt_st_open(dir);
    CHECK(s && qt_st_n_tensors(s) == 1 && memcmp(qt_st_find(s, "w.a")->data, a, sizeof(a)) == 0, "single-file folder");
    qt_st_close(s);
    unlink(p1);
    rmdir(dir);
}

static void test_random_corruption(void) {
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                       "\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}}";
    size_t jn = strlen(json), n = 8 + jn + 24;
    uint8_t *base = malloc(n);
    for (int i = 0; i < 8; i++) base[i] = (uint8_t)((uint64_t)jn >> 8 * i);
    memcpy(base + 8, json, jn);
    memset(base + 8 + jn, 0x3f, 24);
    qt_rng r;
    qt_rng_seed(&r, 99);
    const char *p = tmp_path("rand.safetensors");
    int n_ok = 0, n_bad = 0, n_multi = 0;
    uint8_t *c = malloc(n);
    static const char pool[] = "0123456789-.e,[]{}\": tfnul";
    for (int it = 0; it < 3000; it++) {
        memcpy(c, base, n);
        int k = 1 + (int)(qt_rng_u64(&r) % 3);
        for (int m = 0; m < k; m++) {
            size_t pos = (size_t)(qt_rng_u64(&r) % (8 + jn));
            c[pos] = qt_rng_u64(&r) % 2 ? (uint8_t)pool[qt_rng_u64(&r) % (sizeof(pool) - 1)] : (uint8_t)qt_rng_u64(&r);
        }
        write_bytes(p, c, n);
        err_reset();
        qt_st_set *s = qt_st_open(p);
        if (s) {
            n_ok++;
            for (int64_t i = 0; i < qt_st_n_tensors(s); i++) {
                const qt_st_tensor *t = qt_st_tensor_at(s, i);
                volatile uint8_t sum = 0;
                for (size_t q = 0; q < t->nbytes; q++) sum += ((const uint8_t *)t->data)[q];
                (void)sum;
            }
        } else {
            n_bad++;
            if (n_err != 1) n_multi++;
        }
        qt_st_close(s);
    }
    CHECK(n_multi == 0, "%d corrupt opens logged other than exactly one error line", n_multi);
    CHECK(n_bad > 0, "random corruption never failed");
    printf("random corruption: %d opened, %d rejected\n", n_ok, n_bad);
    free(c);
    free(base);
    unlink(p);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/qt-test-st-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    qt_log_set_sink(sink, NULL);
    test_real();
    test_writer();
    test_folders();
    test_fixtures();
    test_random_corruption();
    qt_log_set_sink(NULL, NULL);
    CHECK(rmdir(tmpdir) == 0, "temp dir %s not empty or not removable", tmpdir);
    TEST_END();
}
