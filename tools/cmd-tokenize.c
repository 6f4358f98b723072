// cmd-tokenize.c: `qtune tokenize -m MODEL (TEXT | --file F)`: the token ids
// and pieces of a text. MODEL is a .gguf (a vocabulary-only file is enough: only
// tokenizer.ggml.* is read, no weights are loaded), a Hugging Face folder with
// tokenizer.json, or a tokenizer.json file.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

static qt_tokenizer *load_tokenizer(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        qt_log_error("%s: no such file or folder", path);
        return NULL;
    }
    size_t n = strlen(path);
    if (S_ISDIR(st.st_mode) || (n >= 5 && strcmp(path + n - 5, ".json") == 0)) return qt_tokenizer_from_hf(path);
    qt_gguf *g = qt_gguf_open(path);
    if (!g) return NULL;
    qt_tokenizer *t = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    return t;
}

// A piece for display: printable UTF-8 as is, control bytes and bytes of
// incomplete characters as escapes.
static void print_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else if (c < 0x80) putchar(c);
        else {
            size_t l = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
            bool whole = l > 0 && i + l <= n;
            for (size_t k = 1; whole && k < l; k++) whole = ((unsigned char)p[i + k] & 0xc0) == 0x80;
            if (whole) { fwrite(p + i, 1, l, stdout); i += l - 1; }
            else printf("\\x%02x", c);
        }
    }
}

int qt_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    bool ids_only = false, no_bos = false, special = false, jsonl = false;
    int verbose = 1;
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "a .gguf (vocabulary-only is enough), an HF folder or tokenizer.json" },
        { "file", 'f', QT_OPT_STR, &file, "F", "tokenize the contents of this file instead of TEXT" },
        { "ids", 0, QT_OPT_FLAG, &ids_only, NULL, "print only the ids, space-separated, on one line" },
        { "no-bos", 0, QT_OPT_FLAG, &no_bos, NULL, "do not add BOS even if the model asks for it" },
        { "parse-special", 0, QT_OPT_FLAG, &special, NULL, "parse special-token texts (<s>, <|im_start|>, ...) in the text", "--special" },
        { "jsonl", 0, QT_OPT_FLAG, &jsonl, NULL, "--file holds one text per line (a JSON string or {\"text\": ...}): one line of ids each" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "tokenize", "-m MODEL [options] (TEXT | --file F)",
                               "Print the token ids and pieces of a text.", opts, 0, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!model) {
        qt_log_error("qtune tokenize: -m MODEL is required (see qtune tokenize --help)");
        return 2;
    }
    if ((n_pos == 1) == (file != NULL)) {
        qt_log_error("qtune tokenize: give either TEXT or --file F (see qtune tokenize --help)");
        return 2;
    }
    char *buf = NULL;
    const char *text;
    size_t len;
    if (file) {
        buf = qt_read_file(file, &len);
        if (!buf) return 1;
        text = buf;
    } else {
        text = pos[0];
        len = strlen(text);
    }
    if (jsonl && !file) {
        qt_log_error("qtune tokenize: --jsonl reads --file F");
        qt_free(buf);
        return 2;
    }
    qt_tokenizer *t = load_tokenizer(model);
    if (!t) { qt_free(buf); return 1; }
    bool bos = !no_bos && qt_tokenizer_add_bos(t);
    if (jsonl) {
        int rc = 0, line = 0;
        for (char *s = buf, *next; s && *s && rc == 0; s = next) {
            next = strchr(s, '\n');
            if (next) *next++ = 0;
            line++;
            if (!*s) continue;
            cJSON *j = cJSON_Parse(s);
            const cJSON *tx = cJSON_IsString(j) ? j : cJSON_GetObjectItemCaseSensitive(j, "text");
            if (!cJSON_IsString(tx)) {
                qt_log_error("%s:%d: expected a JSON string or an object with a \"text\" string", file, line);
                rc = 1;
            } else {
                size_t tl = strlen(tx->valuestring);
                int n = qt_tokenize(t, tx->valuestring, tl, bos, special, NULL, 0);
                int32_t *ids = n >= 0 ? qt_malloc(((size_t)n + 1) * sizeof(int32_t)) : NULL;
                if (n < 0) rc = 1;
                else qt_tokenize(t, tx->valuestring, tl, bos, special, ids, n + 1);
                for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
                if (n >= 0) printf("\n");
                qt_free(ids);
            }
            cJSON_Delete(j);
        }
        qt_tokenizer_free(t);
        qt_free(buf);
        return rc;
    }
    int n = qt_tokenize(t, text, len, bos, special, NULL, 0);
    int rc = 0;
    if (n < 0) {
        rc = 1;
    } else {
        int32_t *ids = qt_malloc(((size_t)n + 1) * sizeof(int32_t));
        qt_tokenize(t, text, len, bos, special, ids, n);
        if (ids_only) {
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        } else {
            for (int i = 0; i < n; i++) {
                size_t pl;
                const char *p = qt_token_to_piece(t, ids[i], true, &pl);
                printf("%7d  '", ids[i]);
                print_piece(p, pl);
                printf("'\n");
            }
            printf("%d tokens (%s tokenizer%s%s, vocabulary %d)\n", n, qt_tokenizer_model_name(t),
                   *qt_tokenizer_pre_name(t) ? ", pre-tokenizer " : "", qt_tokenizer_pre_name(t),
                   qt_tokenizer_n_vocab(t));
        }
        qt_free(ids);
    }
    qt_tokenizer_free(t);
    qt_free(buf);
    return rc;
}
