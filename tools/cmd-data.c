// cmd-data.c: `qtune data prepare` (CSV / TSV / JSON / JSONL -> the
// train/valid/test.jsonl layout `qtune train` reads, shuffled and split) and
// `qtune data stats` (token-length distribution per split, with the same
// tokenization rules as training). Not here: column type inference, fuzzy
// de-duplication, chat templates other than the dataset's.
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "cli.h"
#include "io/gguf.h"
#include "train/csv.h"
#include "train/dataset.h"

// ---- prepare ----

typedef enum { FMT_TEXT, FMT_COMPLETIONS, FMT_CHAT } out_format;

typedef struct {
    out_format fmt;
    const char *prompt_col, *completion_col, *text_col, *system;
} prep_opts;

typedef struct {
    char **lines;   // JSON text of each output record
    int *src_line;
    int n, cap;
    int n_empty, n_dup;
} records;

// "file:line", or "file: record k" for the k-th element of a JSON array (line = -k).
static const char *where(char *buf, size_t n, const char *name, int line) {
    if (line >= 0) snprintf(buf, n, "%s:%d", name, line);
    else snprintf(buf, n, "%s: record %d", name, -line);
    return buf;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return false;
    return true;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

// Builds the output record from the chosen fields (borrowed strings). NULL
// values or blank required fields -> counted as empty.
static void add_record(records *R, const char *name, int line, const prep_opts *o, const char *text, const char *prompt,
                       const char *completion, const cJSON *messages) {
    cJSON *j = cJSON_CreateObject();
    bool empty = false;
    if (o->fmt == FMT_TEXT) {
        empty = !text || blank(text);
        if (!empty) cJSON_AddStringToObject(j, "text", text);
    } else if (o->fmt == FMT_COMPLETIONS) {
        empty = !prompt || !completion || blank(prompt) || blank(completion);
        if (!empty) {
            cJSON_AddStringToObject(j, "prompt", prompt);
            cJSON_AddStringToObject(j, "completion", completion);
        }
    } else {
        cJSON *m = cJSON_AddArrayToObject(j, "messages");
        bool has_system = false;
        if (messages) {
            int n = cJSON_GetArraySize(messages);
            empty = n == 0;
            for (int i = 0; i < n; i++) {
                const cJSON *e = cJSON_GetArrayItem(messages, i);
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
                if (!cJSON_IsString(r) || !cJSON_IsString(c) || blank(c->valuestring)) { empty = true; break; }
                has_system |= !strcmp(r->valuestring, "system");
            }
        } else {
            empty = !prompt || !completion || blank(prompt) || blank(completion);
        }
        if (!empty) {
            if (o->system && !has_system) {
                cJSON *s = cJSON_CreateObject();
                cJSON_AddStringToObject(s, "role", "system");
                cJSON_AddStringToObject(s, "content", o->system);
                cJSON_AddItemToArray(m, s);
            }
            if (messages) {
                for (int i = 0; i < cJSON_GetArraySize(messages); i++) {
                    const cJSON *e = cJSON_GetArrayItem(messages, i);
                    cJSON *s = cJSON_CreateObject();
                    cJSON_AddStringToObject(s, "role", cJSON_GetObjectItemCaseSensitive(e, "role")->valuestring);
                    cJSON_AddStringToObject(s, "content", cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring);
                    cJSON_AddItemToArray(m, s);
                }
            } else {
                const char *role[2] = { "user", "assistant" }, *content[2] = { prompt, completion };
                for (int k = 0; k < 2; k++) {
                    cJSON *s = cJSON_CreateObject();
                    cJSON_AddStringToObject(s, "role", role[k]);
                    cJSON_AddStringToObject(s, "content", content[k]);
                    cJSON_AddItemToArray(m, s);
                }
            }
        }
    }
    if (empty) {
        char w[4200];
        qt_log_warn("%s: empty record skipped", where(w, sizeof(w), name, line));
        R->n_empty++;
        cJSON_Delete(j);
        return;
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    for (int i = 0; i < R->n; i++)   // exact duplicates (quadratic: fine for the sizes LoRA data has)
        if (!strcmp(R->lines[i], s)) {
            char w[4200];
            qt_log_warn("%s: duplicate of %s %d, skipped", where(w, sizeof(w), name, line),
                        line >= 0 ? "the record at line" : "record", abs(R->src_line[i]));
            R->n_dup++;
            cJSON_free(s);
            return;
        }
    if (R->n == R->cap) {
        R->cap = R->cap ? R->cap * 2 : 64;
        R->lines = qt_realloc(R->lines, sizeof(char *) * (size_t)R->cap);
        R->src_line = qt_realloc(R->src_line, sizeof(int) * (size_t)R->cap);
    }
    R->lines[R->n] = qt_strdup(s);
    R->src_line[R->n++] = line;
    cJSON_free(s);
}

static int need_col(const qt_csv *t, const char *name, const char *col, const char *flag) {
    int c = qt_csv_column(t, col);
    if (c < 0) {
        qt_log_error("%s:1: no column '%s' in the header (choose one with %s)", name, col, flag);
    }
    return c;
}

static int read_csv(const char *path, char sep, const prep_opts *o, records *R) {
    size_t n;
    char *data = qt_read_file(path, &n);
    if (!data) return QT_ERR;
    qt_csv *t = qt_csv_parse(path, data, n, sep);
    qt_free(data);
    if (!t) return QT_ERR;
    int rc = QT_ERR, ct = -1, cp = -1, cc = -1;
    if (o->fmt == FMT_TEXT) {
        if ((ct = need_col(t, path, o->text_col, "--text-col")) < 0) goto done;
    } else {
        if ((cp = need_col(t, path, o->prompt_col, "--prompt-col")) < 0) goto done;
        if ((cc = need_col(t, path, o->completion_col, "--completion-col")) < 0) goto done;
    }
    for (int i = 1; i < t->n_rows; i++) {
        char **f = t->rows[i].fields;
        add_record(R, path, t->rows[i].line, o, ct >= 0 ? f[ct] : NULL, cp >= 0 ? f[cp] : NULL, cc >= 0 ? f[cc] : NULL,
                   NULL);
    }
    rc = QT_OK;
done:
    qt_csv_free(t);
    return rc;
}

static const char *str_field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_record(const char *path, int line, const cJSON *j, const prep_opts *o, records *R) {
    char w[4200];
    where(w, sizeof(w), path, line);
    if (!cJSON_IsObject(j)) {
        qt_log_error("%s: a record must be a JSON object", w);
        return QT_ERR;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const char *keys[3] = { o->text_col, o->prompt_col, o->completion_col };
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
            qt_log_error("%s: \"%s\" must be a string", w, keys[k]);
            return QT_ERR;
        }
    }
    if (o->fmt == FMT_CHAT && msgs && !cJSON_IsArray(msgs)) {
        qt_log_error("%s: \"messages\" must be an array", w);
        return QT_ERR;
    }
    add_record(R, path, line, o, str_field(j, o->text_col), str_field(j, o->prompt_col), str_field(j, o->completion_col),
               o->fmt == FMT_CHAT ? msgs : NULL);
    return QT_OK;
}

static int read_json(const char *path, bool lines, const prep_opts *o, records *R) {
    size_t n;
    char *data = qt_read_file(path, &n);
    if (!data) return QT_ERR;
    int rc = QT_ERR;
    if (qt_utf8_valid_prefix(data, n) < n) {
        size_t at = qt_utf8_valid_prefix(data, n);
        int line = 1;
        for (size_t i = 0; i < at; i++) line += data[i] == '\n';
        qt_log_error("%s:%d: invalid UTF-8", path, line);
        goto done;
    }
    if (lines) {
        int line = 0;
        for (char *s = data, *next; s && *s; s = next) {
            next = strchr(s, '\n');
            if (next) *next++ = 0;
            line++;
            if (blank(s)) continue;
            cJSON *j = cJSON_Parse(s);
            if (!j) {
                qt_log_error("%s:%d: invalid JSON", path, line);
                goto done;
            }
            int e = json_record(path, line, j, o, R);
            cJSON_Delete(j);
            if (e != QT_OK) goto done;
        }
    } else {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(data, &end, true);
        if (!j || !cJSON_IsArray(j)) {
            size_t at = end ? (size_t)(end - data) : 0;
            if (!j) at = (size_t)(cJSON_GetErrorPtr() - data);
            int line = 1;
            for (size_t i = 0; i < at && i < n; i++) line += data[i] == '\n';
            qt_log_error("%s:%d: %s", path, line, j ? "expected a JSON array of records" : "invalid JSON");
            cJSON_Delete(j);
            goto done;
        }
        // cJSON keeps no line numbers: array elements are named by their index
        int k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            k++;
            if (json_record(path, -k, e, o, R) != QT_OK) { cJSON_Delete(j); goto done; }
        }
        cJSON_Delete(j);
    }
    rc = QT_OK;
done:
    qt_free(data);
    return rc;
}

static int write_split(const char *dir, const char *name, records *R, const int *order, int from, int to) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.jsonl", dir, name);
    if (to <= from) {
        remove(path);   // a stale file from an earlier run would be read as this split
        return QT_OK;
    }
    size_t total = 0;
    for (int i = from; i < to; i++) total += strlen(R->lines[order[i]]) + 1;
    char *buf = qt_malloc(total + 1), *p = buf;
    for (int i = from; i < to; i++) {
        size_t l = strlen(R->lines[order[i]]);
        memcpy(p, R->lines[order[i]], l);
        p += l;
        *p++ = '\n';
    }
    int rc = qt_write_file_atomic(path, buf, total);
    qt_free(buf);
    printf("  %-6s %6d records -> %s\n", name, to - from, path);
    return rc;
}

static int cmd_prepare(int argc, char **argv) {
    const char *out = NULL, *format = "completions", *split = "0.8,0.1,0.1", *input_type = NULL;
    prep_opts o = { .prompt_col = "prompt", .completion_col = "completion", .text_col = "text" };
    uint64_t seed = 0;
    int verbose = 1;
    const qt_opt opts[] = {
        { "output", 'o', QT_OPT_STR, &out, "DIR", "folder for train.jsonl, valid.jsonl, test.jsonl (created)" },
        { "format", 'f', QT_OPT_STR, &format, "NAME", "text | completions | chat (default completions)" },
        { "prompt-col", 0, QT_OPT_STR, &o.prompt_col, "NAME", "column / key of the prompt (default prompt)" },
        { "completion-col", 0, QT_OPT_STR, &o.completion_col, "NAME", "column / key of the answer (default completion)" },
        { "text-col", 0, QT_OPT_STR, &o.text_col, "NAME", "column / key of the text for --format text (default text)" },
        { "system", 0, QT_OPT_STR, &o.system, "TEXT", "--format chat: a system message for every conversation" },
        { "split", 0, QT_OPT_STR, &split, "T,V,E", "fractions for train, valid, test (default 0.8,0.1,0.1)" },
        { "seed", 's', QT_OPT_U64, &seed, "S", "shuffle seed (default 0)" },
        { "type", 0, QT_OPT_STR, &input_type, "EXT", "input type when the extension does not tell: csv|tsv|json|jsonl" },
        { "verbose", 'v', QT_OPT_INT, &verbose, "N", "log level 0..2 (default 1)" },
        { 0 },
    };
    const qt_cmd_spec spec = { "data prepare", "INPUT -o DIR [options]",
                               "Convert a CSV, TSV, JSON array or JSONL file into train/valid/test.jsonl for qtune "
                               "train: records shuffled, empty and duplicate records dropped and reported.", opts, 1, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!out) {
        qt_log_error("qtune data prepare: give the output folder with -o DIR");
        return 2;
    }
    if (!strcmp(format, "text")) o.fmt = FMT_TEXT;
    else if (!strcmp(format, "completions")) o.fmt = FMT_COMPLETIONS;
    else if (!strcmp(format, "chat")) o.fmt = FMT_CHAT;
    else {
        qt_log_error("qtune data prepare: --format must be text, completions or chat, not '%s'", format);
        return 2;
    }
    double fr[3];
    char *end;
    const char *s = split;
    for (int k = 0; k < 3; k++) {
        fr[k] = strtod(s, &end);
        if (end == s || !(fr[k] >= 0) || (k < 2 && *end != ',') || (k == 2 && *end)) {
            qt_log_error("qtune data prepare: --split wants three fractions like 0.8,0.1,0.1, not '%s'", split);
            return 2;
        }
        s = end + 1;
    }
    double sum = fr[0] + fr[1] + fr[2];
    if (fabs(sum - 1) > 1e-6 || fr[0] <= 0) {
        qt_log_error("qtune data prepare: --split fractions must add up to 1 with train > 0 (got %g)", sum);
        return 2;
    }
    const char *in = pos[0], *type = input_type;
    if (!type) {
        if (ends_with(in, ".csv")) type = "csv";
        else if (ends_with(in, ".tsv") || ends_with(in, ".tab")) type = "tsv";
        else if (ends_with(in, ".jsonl")) type = "jsonl";
        else if (ends_with(in, ".json")) type = "json";
        else {
            qt_log_error("%s: cannot tell the type from the name: pass --type csv|tsv|json|jsonl", in);
            return 2;
        }
    }
    records R = { 0 };
    int rc = QT_ERR;
    if (!strcmp(type, "csv")) rc = read_csv(in, ',', &o, &R);
    else if (!strcmp(type, "tsv")) rc = read_csv(in, '\t', &o, &R);
    else if (!strcmp(type, "json")) rc = read_json(in, false, &o, &R);
    else if (!strcmp(type, "jsonl")) rc = read_json(in, true, &o, &R);
    else {
        qt_log_error("qtune data prepare: --type must be csv, tsv, json or jsonl, not '%s'", type);
        return 2;
    }
    int *order = NULL;
    if (rc != QT_OK) goto done;
    rc = QT_ERR;
    if (R.n == 0) {
        qt_log_error("%s: no usable records (%d empty, %d duplicates)", in, R.n_empty, R.n_dup);
        goto done;
    }
    // deterministic Fisher-Yates shuffle, then cut
    order = qt_malloc(sizeof(int) * (size_t)R.n);
    for (int i = 0; i < R.n; i++) order[i] = i;
    qt_rng rng;
    qt_rng_seed(&rng, seed);
    for (int i = R.n - 1; i > 0; i--) {
        int j = (int)(qt_rng_u64(&rng) % (uint64_t)(i + 1));
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    int n_valid = (int)floor(R.n * fr[1] + 0.5), n_test = (int)floor(R.n * fr[2] + 0.5);
    if (n_valid + n_test >= R.n) {
        qt_log_error("%s: %d records are too few for --split %s (train would be empty)", in, R.n, split);
        goto done;
    }
    int n_train = R.n - n_valid - n_test;
    if (mkdir(out, 0755) != 0) {
        struct stat st;
        if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
            qt_log_error("%s: cannot create the folder", out);
            goto done;
        }
    }
    printf("%s: %d records (%d empty and %d duplicate records skipped), format %s\n", in, R.n, R.n_empty, R.n_dup,
           format);
    if (write_split(out, "train", &R, order, 0, n_train) != QT_OK ||
        write_split(out, "valid", &R, order, n_train, n_train + n_valid) != QT_OK ||
        write_split(out, "test", &R, order, n_train + n_valid, R.n) != QT_OK)
        goto done;
    rc = QT_OK;
done:
    for (int i = 0; i < R.n; i++) qt_free(R.lines[i]);
    qt_free(R.lines);
    qt_free(R.src_line);
    qt_free(order);
    return rc == QT_OK ? 0 : 1;
}

// ---- stats ----

static qt_tokenizer *load_tokenizer(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        qt_log_error("%s: no such file or folder", path);
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || ends_with(path, ".json")) return qt_tokenizer_from_hf(path);
    qt_gguf *g = qt_gguf_open(path);
    if (!g) return NULL;
    qt_tokenizer *t = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    return t;
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

// Nearest-rank percentile of sorted v[0..n): the smallest value with at least p% of the values <= it.
static int percentile(const int *v, int n, double p) {
    int k = (int)ceil(p / 100.0 * n);
    return v[QT_MAX(k, 1) - 1];
}

static void histogram(const int *v, int n, int width) {
    int lo = v[0], hi = v[n - 1], nb = 10;
    if (hi == lo) nb = 1;
    int step = (hi - lo) / nb + 1, counts[10] = { 0 }, maxc = 0;
    for (int i = 0; i < n; i++) counts[QT_MIN((v[i] - lo) / step, nb - 1)]++;
    for (int b = 0; b < nb; b++) maxc = QT_MAX(maxc, counts[b]);
    for (int b = 0; b < nb; b++) {
        int bar = maxc ? (counts[b] * width + maxc - 1) / maxc : 0;
        printf("    %6d-%-6d %6d |", lo + b * step, lo + (b + 1) * step - 1, counts[b]);
        for (int k = 0; k < bar; k++) fputs("#", stdout);
        fputc('\n', stdout);
    }
}

static int cmd_stats(int argc, char **argv) {
    const char *model = NULL;
    int max_seq_len = 2048, verbose = 1;
    bool lengths = false;
    qt_data_opts dopts = qt_data_defaults();
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "tokenizer: a .gguf (vocabulary-only is enough), HF folder or tokenizer.json" },
        { "max-seq-len", 0, QT_OPT_INT, &max_seq_len, "N", "count the records longer than N tokens (default 2048)" },
        { "mask-prompt", 0, QT_OPT_FLAG, &dopts.mask_prompt, NULL, "also count trained tokens as --mask-prompt would" },
        { "parse-special", 0, QT_OPT_FLAG, &dopts.parse_special, NULL, "read <s>, </s>, ... in text records as special tokens" },
        { "chat-template", 0, QT_OPT_STR, &dopts.chat_template, "NAME", "template of \"messages\" records, as in train (default llama2)" },
        { "lengths", 0, QT_OPT_FLAG, &lengths, NULL, "print 'split line tokens' for every record" },
        { "verbose", 'v', QT_OPT_INT, &verbose, "N", "log level 0..2 (default 1)" },
        { 0 },
    };
    const qt_cmd_spec spec = { "data stats", "-m MODEL DATA [options]",
                               "Token-length statistics of a data folder (train/valid/test.jsonl) or a .jsonl file, "
                               "tokenized exactly as qtune train does.", opts, 1, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!model || max_seq_len < 2) {
        qt_log_error("qtune data stats: give a tokenizer with -m MODEL (and --max-seq-len >= 2)");
        return 2;
    }
    qt_tokenizer *tok = load_tokenizer(model);
    if (!tok) return 1;
    dopts.max_seq_len = INT_MAX / 4;   // measure whole records
    const char *names[3] = { "train", "valid", "test" };
    char *paths[3] = { NULL, NULL, NULL };
    struct stat st;
    int rc = 1, max_p99 = 0, max_all = 0;
    if (stat(pos[0], &st) == 0 && S_ISDIR(st.st_mode)) {
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(pos[0]) + 16;
            char *p = qt_malloc(n);
            snprintf(p, n, "%s/%s.jsonl", pos[0], names[k]);
            if (stat(p, &st) == 0) paths[k] = p;
            else qt_free(p);
        }
        if (!paths[0] && !paths[1] && !paths[2]) {
            qt_log_error("%s: no train.jsonl, valid.jsonl or test.jsonl", pos[0]);
            goto done;
        }
    } else {
        paths[0] = qt_strdup(pos[0]);
        names[0] = "data";
    }
    for (int k = 0; k < 3; k++) {
        if (!paths[k]) continue;
        qt_dataset *d = qt_dataset_load(paths[k], tok, &dopts);
        if (!d) goto done;
        int n = qt_dataset_n(d), n_over = 0;
        int *len = qt_malloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) {
            len[i] = qt_dataset_get(d, i)->len;
            n_over += len[i] > max_seq_len;
            if (lengths) printf("%s %d %d\n", names[k], qt_dataset_line(d, i), len[i]);
        }
        qsort(len, (size_t)n, sizeof(int), cmp_int);
        printf("%s: %d records, %lld tokens (%lld trained%s), mean %.1f\n", paths[k], n, (long long)qt_dataset_n_tokens(d),
               (long long)qt_dataset_n_train_tokens(d), dopts.mask_prompt ? " with --mask-prompt" : "",
               (double)qt_dataset_n_tokens(d) / n);
        printf("  tokens per record: min %d, p50 %d, p90 %d, p99 %d, max %d\n", len[0], percentile(len, n, 50),
               percentile(len, n, 90), percentile(len, n, 99), len[n - 1]);
        printf("  longer than --max-seq-len %d (would be truncated): %d\n", max_seq_len, n_over);
        histogram(len, n, 40);
        max_p99 = QT_MAX(max_p99, percentile(len, n, 99));
        max_all = QT_MAX(max_all, len[n - 1]);
        qt_free(len);
        qt_dataset_free(d);
    }
    // a multiple of 64 that holds the p99 record of every split; the longest if it is close
    int want = max_all <= max_p99 * 5 / 4 ? max_all : max_p99;
    int suggest = (want + 63) / 64 * 64;
    printf("suggested --max-seq-len %d (holds %s)\n", suggest, want == max_all ? "every record" : "99%% of the records");
    rc = 0;
done:
    for (int k = 0; k < 3; k++) qt_free(paths[k]);
    qt_tokenizer_free(tok);
    return rc;
}

int qt_cmd_data(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "stats")) return cmd_stats(argc - 1, argv + 1);
    FILE *f = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) ? stdout : stderr;
    fprintf(f, "usage: qtune data prepare INPUT -o DIR [options]   convert CSV/TSV/JSON/JSONL to train/valid/test.jsonl\n"
               "       qtune data stats -m MODEL DATA [options]    token-length statistics\n"
               "(qtune data prepare --help, qtune data stats --help for the options)\n");
    return f == stdout ? 0 : 2;
}
