// csv.c: RFC 4180 CSV / TSV reader (csv.h). One pass over the bytes with a
// small state machine; fields are copied out unescaped. Deliberately strict:
// malformed quoting is an error with file:line rather than a guess (Python's
// csv module guesses). Not here: other quote or escape characters, encodings
// other than UTF-8, streaming of files larger than memory.
#include "train/csv.h"

#include <stdbool.h>
#include <string.h>

#include "base/base.h"

size_t qt_utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (i + (size_t)len > n) return i;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += (size_t)len;
    }
    return n;
}

typedef struct {
    char *p;
    size_t n, cap;
} buf;
static void buf_c(buf *b, char c) {
    if (b->n + 2 > b->cap) b->p = qt_realloc(b->p, b->cap = b->cap ? b->cap * 2 : 64);
    b->p[b->n++] = c;
}

static void row_add(qt_csv_row *r, int *cap, buf *f) {
    if (r->n_fields == *cap) r->fields = qt_realloc(r->fields, sizeof(char *) * (size_t)(*cap = *cap ? *cap * 2 : 8));
    char *s = qt_malloc(f->n + 1);
    if (f->n) memcpy(s, f->p, f->n);
    s[f->n] = 0;
    r->fields[r->n_fields++] = s;
    f->n = 0;
}

static void row_free(qt_csv_row *r) {
    for (int i = 0; i < r->n_fields; i++) qt_free(r->fields[i]);
    qt_free(r->fields);
}

void qt_csv_free(qt_csv *t) {
    if (!t) return;
    for (int i = 0; i < t->n_rows; i++) row_free(&t->rows[i]);
    qt_free(t->rows);
    qt_free(t);
}

int qt_csv_column(const qt_csv *t, const char *name) {
    if (!t->n_rows) return -1;
    for (int i = 0; i < t->rows[0].n_fields; i++)
        if (!strcmp(t->rows[0].fields[i], name)) return i;
    return -1;
}

qt_csv *qt_csv_parse(const char *name, const char *data, size_t n, char sep) {
    const char *s = data;
    if (n >= 3 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf) {
        s += 3;
        n -= 3;
    }
    // UTF-8 and NUL first, so the error names the line of the bad byte
    size_t ok = qt_utf8_valid_prefix(s, n);
    const char *nul = memchr(s, 0, n);
    if (ok < n || nul) {
        size_t at = nul && (size_t)(nul - s) < ok ? (size_t)(nul - s) : ok;
        int line = 1;
        for (size_t i = 0; i < at; i++) line += s[i] == '\n' || (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'));
        qt_log_error("%s:%d: %s (byte %zu)", name, line, nul && (size_t)(nul - s) == at ? "NUL byte" : "invalid UTF-8",
                     at + (s - data));
        return NULL;
    }
    qt_csv *t = qt_calloc(1, sizeof(qt_csv));
    int cap_rows = 0, cap_f = 0, line = 1, quote_line = 0;
    buf f = { 0 };
    qt_csv_row row = { 0 };
    // states: at the start of a field, in an unquoted field, in quotes, just after a closing quote
    enum { START, PLAIN, QUOTED, AFTER } st = START;
    bool row_blank = true;   // nothing seen in this record yet (blank lines are skipped)
    row.line = 1;
    for (size_t i = 0; i <= n; i++) {
        bool end = i == n;
        char c = end ? '\n' : s[i];
        bool nl = c == '\n' || c == '\r';
        if (st == QUOTED) {
            if (end) {
                qt_log_error("%s:%d: unterminated quoted field (the quote opened here never closes)", name, quote_line);
                goto fail;
            }
            if (c == '"') {
                if (i + 1 < n && s[i + 1] == '"') { buf_c(&f, '"'); i++; }
                else st = AFTER;
            } else {
                buf_c(&f, c);
                if (c == '\n' || (c == '\r' && (i + 1 >= n || s[i + 1] != '\n'))) line++;
            }
            continue;
        }
        if (c == sep) {
            row_add(&row, &cap_f, &f);
            row_blank = false;
            st = START;
        } else if (nl) {
            if (c == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
            if (!(row_blank && st == START && f.n == 0)) {
                row_add(&row, &cap_f, &f);
                if (t->n_rows > 0 && row.n_fields != t->rows[0].n_fields) {
                    qt_log_error("%s:%d: %d fields, but the header has %d", name, row.line, row.n_fields,
                                 t->rows[0].n_fields);
                    goto fail;
                }
                if (t->n_rows == cap_rows)
                    t->rows = qt_realloc(t->rows, sizeof(qt_csv_row) * (size_t)(cap_rows = cap_rows ? cap_rows * 2 : 16));
                t->rows[t->n_rows++] = row;
                memset(&row, 0, sizeof(row));
                cap_f = 0;
            }
            if (!end) line++;
            row.line = line;
            row_blank = true;
            st = START;
        } else if (st == AFTER) {
            qt_log_error("%s:%d: '%c' after a closing quote (a quote inside a quoted field is written \"\")", name, line,
                         c);
            goto fail;
        } else if (c == '"') {
            if (st == PLAIN) {
                qt_log_error("%s:%d: quote inside an unquoted field (quote the whole field and double the quote: "
                             "\"a \"\"b\"\" c\")", name, line);
                goto fail;
            }
            st = QUOTED;
            quote_line = line;
            row_blank = false;
        } else {
            buf_c(&f, c);
            st = PLAIN;
            row_blank = false;
        }
    }
    qt_free(f.p);
    row_free(&row);
    if (t->n_rows == 0) {
        qt_log_error("%s: empty: no header row", name);
        qt_csv_free(t);
        return NULL;
    }
    return t;
fail:
    qt_free(f.p);
    row_free(&row);
    qt_csv_free(t);
    return NULL;
}
