// test-csv.c: the RFC 4180 reader on the edge cases of the RFC and of files
// in the wild (BOM, CRLF, CR, quoted separators and line breaks, "" escapes,
// empty fields, blank lines, TSV), and its errors: each names the file:line.
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "test.h"
#include "train/csv.h"

static char last_err[512];
static void sink(const char *line, void *ud) {
    (void)ud;
    snprintf(last_err, sizeof(last_err), "%s", line);
}

static qt_csv *parse(const char *s, char sep) { return qt_csv_parse("t.csv", s, strlen(s), sep); }

static void expect_err(const char *s, const char *want) {
    last_err[0] = 0;
    qt_csv *t = parse(s, ',');
    CHECK(t == NULL, "should fail: %s", s);
    CHECK(strstr(last_err, want) != NULL, "error '%s' should contain '%s'", last_err, want);
    qt_csv_free(t);
}

int main(void) {
    qt_log_set_sink(sink, NULL);
    // BOM, CRLF, quoted comma, quoted CRLF inside a field, "" escape, empty fields
    const char *s = "\xef\xbb\xbfprompt,completion\r\n"
                    "\"a, b\",\"line1\r\nline2\"\r\n"
                    "\"say \"\"hi\"\"\",\r\n"
                    ",\"\"\r\n"
                    "\r\n"
                    "x,y";   // no final line break
    qt_csv *t = parse(s, ',');
    CHECK(t != NULL, "parse: %s", last_err);
    if (t) {
        CHECK(t->n_rows == 5, "rows %d", t->n_rows);
        CHECK(!strcmp(t->rows[0].fields[0], "prompt"), "BOM not stripped: '%s'", t->rows[0].fields[0]);
        CHECK(qt_csv_column(t, "completion") == 1 && qt_csv_column(t, "nope") == -1, "column lookup");
        CHECK(!strcmp(t->rows[1].fields[0], "a, b"), "quoted comma");
        CHECK(!strcmp(t->rows[1].fields[1], "line1\r\nline2"), "quoted line break kept as is");
        CHECK(!strcmp(t->rows[2].fields[0], "say \"hi\"") && !strcmp(t->rows[2].fields[1], ""), "escaped quotes");
        CHECK(t->n_rows > 3 && !strcmp(t->rows[3].fields[0], "") && !strcmp(t->rows[3].fields[1], ""), "empty fields");
        CHECK(t->n_rows > 4 && t->rows[4].line == 7 && !strcmp(t->rows[4].fields[1], "y"), "line numbers: %d",
              t->n_rows > 4 ? t->rows[4].line : -1);
        CHECK(t->rows[2].line == 4, "row 2 starts on line 4 (after a 2-line record): %d", t->rows[2].line);
    }
    qt_csv_free(t);
    // CR-only line ends, TSV with a quoted tab, UTF-8 text
    t = parse("a\tb\r\"x\ty\"\tz\u00e9\r", '\t');
    CHECK(t && t->n_rows == 2 && !strcmp(t->rows[1].fields[0], "x\ty") && !strcmp(t->rows[1].fields[1], "z\u00e9"),
          "tsv / CR");
    qt_csv_free(t);
    // a single column, a trailing separator makes an empty last field
    t = parse("a,\n1,\n", ',');
    CHECK(t && t->rows[1].n_fields == 2 && !t->rows[1].fields[1][0], "trailing comma");
    qt_csv_free(t);

    // errors name the line
    expect_err("a,b\n1,2\n3\n", "t.csv:3: 1 fields, but the header has 2");
    expect_err("a,b\n1,2,3\n", "t.csv:2: 3 fields");
    expect_err("a,b\n\"1\n2,3\n", "t.csv:2: unterminated");
    expect_err("a,b\n\"1\"x,2\n", "t.csv:2: 'x' after a closing quote");
    expect_err("a,b\n1\"2,3\n", "t.csv:2: quote inside an unquoted field");
    expect_err("a,b\n1,2\n\xc3\x28,3\n", "t.csv:3: invalid UTF-8");
    expect_err("a,b\n\xed\xa0\x80,3\n", "t.csv:2: invalid UTF-8");       // surrogate
    expect_err("a,b\n\xc0\xaf,3\n", "t.csv:2: invalid UTF-8");           // overlong '/'
    expect_err("", "no header");
    expect_err("\r\n\r\n", "no header");
    {
        const char nul[] = "a,b\n1,\0\n";
        last_err[0] = 0;
        t = qt_csv_parse("t.csv", nul, sizeof(nul) - 1, ',');
        CHECK(!t && strstr(last_err, "t.csv:2: NUL byte"), "NUL: %s", last_err);
        qt_csv_free(t);
    }
    CHECK(qt_utf8_valid_prefix("ok\xf4\x90\x80\x80", 6) == 2, "above U+10FFFF");
    CHECK(qt_utf8_valid_prefix("\xf0\x9f\x98\x80", 4) == 4, "emoji is valid");
    qt_log_set_sink(NULL, NULL);
    TEST_END();
}
