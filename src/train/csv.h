// csv.h: a strict RFC 4180 reader for `qtune data prepare` (CSV and TSV).
#ifndef QT_CSV_H
#define QT_CSV_H

#include <stddef.h>

typedef struct {
    char **fields;   // (n_fields) NUL-terminated UTF-8, owned by the table
    int n_fields;
    int line;        // 1-based line where the record starts
} qt_csv_row;

typedef struct {
    qt_csv_row *rows;   // (n_rows) the header is rows[0]
    int n_rows;
} qt_csv;

// Parses data (n bytes) as records separated by CRLF, LF or CR, fields by sep
// (',' or '\t'). A field may be quoted: "..." with "" for a quote inside; quoted
// fields may hold separators and line breaks. A UTF-8 BOM at the start is
// skipped; blank lines are skipped. Every record must have as many fields as
// the first (the header). Errors, logged as "<name>:<line>: <what is wrong>"
// and returned as NULL: invalid UTF-8, a quote inside an unquoted field, text
// after a closing quote, an unterminated quote (named at the line it opened),
// a NUL byte, a ragged row, no header. Free with qt_csv_free.
qt_csv *qt_csv_parse(const char *name, const char *data, size_t n, char sep);
void qt_csv_free(qt_csv *t);   // NULL is a no-op
// Index of the header column called name, or -1.
int qt_csv_column(const qt_csv *t, const char *name);

// Length of the valid UTF-8 prefix of s (n bytes): == n when all of s is valid
// (RFC 3629: no overlong forms, surrogates or code points above U+10FFFF).
size_t qt_utf8_valid_prefix(const char *s, size_t n);

#endif
