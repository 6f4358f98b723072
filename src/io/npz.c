// npz.c: NumPy .npz reader and writer (see npz.h). The reader walks the ZIP
// central directory (ZIP64 sizes and offsets included), checks every member's
// local header, name, sizes and CRC-32 against the file, parses the .npy
// header dict strictly and checks the shape against the byte count before
// copying the array into its own aligned buffer (members are not aligned in
// the file). The writer stores members uncompressed with numpy's 64-byte
// aligned v1.0 headers; numpy.load and mlx.core.load read the result.
#include "io/npz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

struct qt_npz {
    qt_npz_array *a;
    int n;
};

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready;   // written once with the same values by any thread: benign
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

// ---- .npy ----

// Value of 'key' in the header dict text: a pointer just after "'key':".
static const char *dict_value(const char *h, const char *key) {
    char pat[32];
    snprintf(pat, sizeof(pat), "'%s':", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

// Parses one .npy member into a (data copied). why: what is wrong.
static int parse_npy(const uint8_t *p, size_t n, qt_npz_array *a, const char **why) {
    if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0) { *why = "not a .npy array (bad magic)"; return QT_ERR; }
    int major = p[6];
    size_t hlen, off;
    if (major == 1) { hlen = rd16(p + 8); off = 10; }
    else if (major == 2 || major == 3) {
        if (n < 12) { *why = "truncated .npy header"; return QT_ERR; }
        hlen = rd32(p + 8);
        off = 12;
    } else { *why = "unsupported .npy version"; return QT_ERR; }
    if (hlen > n - off || hlen > 65536) { *why = "truncated .npy header"; return QT_ERR; }
    char *h = qt_malloc(hlen + 1);
    memcpy(h, p + off, hlen);
    h[hlen] = 0;
    int rc = QT_ERR;
    const char *descr = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"), *sh = dict_value(h, "shape");
    if (!descr || !fo || !sh) { *why = "the .npy header lacks descr, fortran_order or shape"; goto done; }
    size_t esize;
    bool f64 = false;
    if (!strncmp(descr, "'<f4'", 5)) { a->type = QT_TYPE_F32; esize = 4; }
    else if (!strncmp(descr, "'<f2'", 5)) { a->type = QT_TYPE_F16; esize = 2; }
    else if (!strncmp(descr, "'<f8'", 5)) { a->type = QT_TYPE_F32; esize = 8; f64 = true; }
    else { *why = "dtype is not float32, float16 or float64 (little-endian)"; goto done; }
    if (strncmp(fo, "False", 5) != 0) { *why = "Fortran-order arrays are not supported"; goto done; }
    if (*sh != '(') { *why = "bad shape in the .npy header"; goto done; }
    sh++;
    a->n_dims = 0;
    uint64_t count = 1;
    for (;;) {
        while (*sh == ' ') sh++;
        if (*sh == ')') break;
        char *end;
        long long d = strtoll(sh, &end, 10);
        if (end == sh || d < 0 || d > (1ll << 40) || a->n_dims >= 4) { *why = "bad shape in the .npy header"; goto done; }
        a->shape[a->n_dims++] = d;
        count *= (uint64_t)d;
        if (count > (1ull << 40)) { *why = "array too large"; goto done; }
        sh = end;
        while (*sh == ' ') sh++;
        if (*sh == ',') sh++;
    }
    size_t data_off = off + hlen;
    if (count * esize != n - data_off) { *why = "the array's byte count does not match its shape"; goto done; }
    a->nbytes = (size_t)count * (f64 ? 4 : esize);
    void *buf = qt_malloc(a->nbytes ? a->nbytes : 1);
    if (f64) {
        for (uint64_t i = 0; i < count; i++) {
            double d;
            memcpy(&d, p + data_off + i * 8, 8);
            ((float *)buf)[i] = (float)d;
        }
    } else {
        memcpy(buf, p + data_off, a->nbytes);
    }
    a->data = buf;
    rc = QT_OK;
done:
    qt_free(h);
    return rc;
}

// ---- reader ----

void qt_npz_close(qt_npz *z) {
    if (!z) return;
    for (int i = 0; i < z->n; i++) {
        qt_free(z->a[i].name);
        qt_free((void *)z->a[i].data);
    }
    qt_free(z->a);
    qt_free(z);
}

int qt_npz_n(const qt_npz *z) { return z->n; }
const qt_npz_array *qt_npz_at(const qt_npz *z, int i) {
    QT_ASSERT(i >= 0 && i < z->n);
    return &z->a[i];
}

// ZIP64 extra field (id 1): replaces the 0xffffffff fields in order.
static void zip64_extra(const uint8_t *ex, size_t n, uint64_t *usize, uint64_t *csize, uint64_t *off) {
    size_t i = 0;
    while (i + 4 <= n) {
        uint16_t id = rd16(ex + i), len = rd16(ex + i + 2);
        if (i + 4 + len > n) return;
        if (id == 1) {
            const uint8_t *q = ex + i + 4, *qe = q + len;
            if (*usize == 0xffffffffu && q + 8 <= qe) { *usize = rd64(q); q += 8; }
            if (*csize == 0xffffffffu && q + 8 <= qe) { *csize = rd64(q); q += 8; }
            if (off && *off == 0xffffffffu && q + 8 <= qe) { *off = rd64(q); }
            return;
        }
        i += 4 + (size_t)len;
    }
}

qt_npz *qt_npz_open(const char *path) {
    size_t n = 0;
    uint8_t *f = (uint8_t *)qt_read_file(path, &n);
    if (!f) return NULL;
    qt_npz *z = qt_calloc(1, sizeof(qt_npz));
    const char *why = NULL;
    char member[256] = "";
    // end of central directory: the last "PK\5\6" within the 64 KiB comment window
    size_t eocd = SIZE_MAX;
    for (size_t i = n >= 22 ? n - 22 : 0; n >= 22; i--) {
        if (rd32(f + i) == 0x06054b50u) { eocd = i; break; }
        if (i == 0 || n - i > 65557) break;
    }
    if (eocd == SIZE_MAX) { why = "not a ZIP/.npz archive (no end of central directory)"; goto fail; }
    uint64_t n_ent = rd16(f + eocd + 10), cd_size = rd32(f + eocd + 12), cd_off = rd32(f + eocd + 16);
    if ((n_ent == 0xffff || cd_off == 0xffffffffu) && eocd >= 20 && rd32(f + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = rd64(f + eocd - 20 + 8);
        if (z64 > n - 56 || rd32(f + z64) != 0x06064b50u) { why = "bad ZIP64 end of central directory"; goto fail; }
        n_ent = rd64(f + z64 + 32);
        cd_size = rd64(f + z64 + 40);
        cd_off = rd64(f + z64 + 48);
    }
    if (cd_off > n || cd_size > n - cd_off || n_ent > cd_size / 46) { why = "central directory out of bounds"; goto fail; }
    z->a = qt_calloc(n_ent ? (size_t)n_ent : 1, sizeof(qt_npz_array));
    size_t p = (size_t)cd_off;
    for (uint64_t e = 0; e < n_ent; e++) {
        if (p + 46 > cd_off + cd_size || rd32(f + p) != 0x02014b50u) { why = "bad central directory entry"; goto fail; }
        uint16_t method = rd16(f + p + 10), nlen = rd16(f + p + 28), xlen = rd16(f + p + 30), clen = rd16(f + p + 32);
        uint32_t crc = rd32(f + p + 16);
        uint64_t csize = rd32(f + p + 20), usize = rd32(f + p + 24), loff = rd32(f + p + 42);
        if (p + 46 + (size_t)nlen + xlen + clen > cd_off + cd_size) { why = "bad central directory entry"; goto fail; }
        snprintf(member, sizeof(member), "%.*s", (int)nlen, (const char *)f + p + 46);
        zip64_extra(f + p + 46 + nlen, xlen, &usize, &csize, &loff);
        p += 46 + (size_t)nlen + xlen + clen;
        if (method != 0) { why = "compressed member (numpy.savez_compressed): save the adapter with numpy.savez or mlx.core.savez"; goto fail; }
        if (csize != usize) { why = "stored member with differing sizes"; goto fail; }
        if (loff > n - 30 || rd32(f + loff) != 0x04034b50u) { why = "bad local header"; goto fail; }
        uint16_t lnlen = rd16(f + loff + 26), lxlen = rd16(f + loff + 28);
        uint64_t data = loff + 30 + lnlen + lxlen;
        if (lnlen != nlen || memcmp(f + loff + 30, member, nlen) != 0) { why = "local header name differs from the directory"; goto fail; }
        if (data > n || usize > n - data) { why = "member data out of bounds"; goto fail; }
        if (crc32_update(0, f + data, (size_t)usize) != crc) { why = "CRC-32 mismatch (damaged file)"; goto fail; }
        size_t ml = strlen(member);
        if (ml < 5 || strcmp(member + ml - 4, ".npy") != 0) { why = "member is not a .npy array"; goto fail; }
        qt_npz_array *a = &z->a[z->n];
        if (parse_npy(f + data, (size_t)usize, a, &why) != QT_OK) goto fail;
        member[ml - 4] = 0;
        a->name = qt_strdup(member);
        z->n++;
    }
    qt_free(f);
    return z;
fail:
    if (member[0]) qt_log_error("%s: %s: %s", path, member, why);
    else qt_log_error("%s: %s", path, why);
    qt_free(f);
    qt_npz_close(z);
    return NULL;
}

// ---- writer ----

typedef struct {
    char *name;
    int n_dims;
    int64_t shape[4];
    const float *data;
} wentry;

struct qt_npz_writer {
    wentry *e;
    int n, cap;
};

qt_npz_writer *qt_npz_writer_init(void) { return qt_calloc(1, sizeof(qt_npz_writer)); }

void qt_npz_writer_free(qt_npz_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) qt_free(w->e[i].name);
    qt_free(w->e);
    qt_free(w);
}

void qt_npz_writer_add(qt_npz_writer *w, const char *name, int n_dims, const int64_t *shape, const float *data) {
    QT_ASSERT(n_dims >= 1 && n_dims <= 4);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        w->e = qt_realloc(w->e, sizeof(wentry) * (size_t)w->cap);
    }
    wentry *e = &w->e[w->n++];
    size_t l = strlen(name) + 5;
    e->name = qt_malloc(l);
    snprintf(e->name, l, "%s.npy", name);
    e->n_dims = n_dims;
    memcpy(e->shape, shape, sizeof(int64_t) * (size_t)n_dims);
    e->data = data;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = QT_MAX(2 * b->cap, b->n + n + 1024);
        b->p = qt_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put16(bytes *b, uint32_t v) { uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) }; put(b, x, 2); }
static void put32(bytes *b, uint32_t v) { uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) }; put(b, x, 4); }

int qt_npz_write(qt_npz_writer *w, const char *path) {
    bytes out = { 0 }, cd = { 0 };
    int rc = QT_ERR;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        // the .npy member: v1.0 header padded with spaces to a multiple of 64, '\n' last
        char h[256];
        int hl = snprintf(h, sizeof(h), "{'descr': '<f4', 'fortran_order': False, 'shape': (");
        size_t count = 1;
        for (int d = 0; d < e->n_dims; d++) {
            hl += snprintf(h + hl, sizeof(h) - (size_t)hl, "%lld,%s", (long long)e->shape[d], d + 1 < e->n_dims ? " " : "");
            count *= (size_t)e->shape[d];
        }
        if (e->n_dims > 1) hl--;   // (3,) for one dimension, (3, 4) otherwise
        hl += snprintf(h + hl, sizeof(h) - (size_t)hl, "), }");
        size_t total = 10 + (size_t)hl + 1, pad = (64 - total % 64) % 64;
        bytes m = { 0 };
        put(&m, "\x93NUMPY\x01\x00", 8);
        put16(&m, (uint32_t)(hl + pad + 1));
        put(&m, h, (size_t)hl);
        for (size_t k = 0; k < pad; k++) put(&m, " ", 1);
        put(&m, "\n", 1);
        put(&m, e->data, count * sizeof(float));
        if (m.n > 0xfffffff0u || out.n > 0xfffffff0u - m.n) {
            qt_log_error("%s: adapter too large for a non-ZIP64 .npz", path);
            qt_free(m.p);
            goto done;
        }
        uint32_t crc = crc32_update(0, m.p, m.n), off = (uint32_t)out.n;
        size_t nl = strlen(e->name);
        // local header: version 20, no flags, stored, DOS time 1980-01-01 00:00
        put32(&out, 0x04034b50u); put16(&out, 20); put16(&out, 0); put16(&out, 0); put16(&out, 0); put16(&out, 0x21);
        put32(&out, crc); put32(&out, (uint32_t)m.n); put32(&out, (uint32_t)m.n); put16(&out, (uint32_t)nl); put16(&out, 0);
        put(&out, e->name, nl);
        put(&out, m.p, m.n);
        put32(&cd, 0x02014b50u); put16(&cd, 20); put16(&cd, 20); put16(&cd, 0); put16(&cd, 0); put16(&cd, 0); put16(&cd, 0x21);
        put32(&cd, crc); put32(&cd, (uint32_t)m.n); put32(&cd, (uint32_t)m.n); put16(&cd, (uint32_t)nl); put16(&cd, 0);
        put16(&cd, 0); put16(&cd, 0); put16(&cd, 0); put32(&cd, 0); put32(&cd, off);
        put(&cd, e->name, nl);
        qt_free(m.p);
    }
    uint32_t cd_off = (uint32_t)out.n, cd_size = (uint32_t)cd.n;
    put(&out, cd.p, cd.n);
    put32(&out, 0x06054b50u); put16(&out, 0); put16(&out, 0); put16(&out, (uint32_t)w->n); put16(&out, (uint32_t)w->n);
    put32(&out, cd_size); put32(&out, cd_off); put16(&out, 0);
    rc = qt_write_file_atomic(path, out.p, out.n);
done:
    qt_free(out.p);
    qt_free(cd.p);
    return rc;
}
