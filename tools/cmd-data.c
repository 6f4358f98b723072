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
#include "common.h"
#include "io/gguf.h"
#include "train/csv.h"
#include "train/dataset.h"

// ---- prepare ----

typedef enum { FMT_TEXT, FMT_COMPLETIONS, FMT_CHAT } out_format;

typedef struct {
    out_format fmt;
    const char *prompt_col, *completion_col, *text_col, *system;
    const char *prompt_template;   // "{instruction}\n\n{context}": the prompt from several fields (escapes processed)
} prep_opts;

typedef struct {
    char **lines;   // JSON text of each output record
    int *src_line;
    int n, cap;
    int n_empty, n_dup;
    char keys[1024];   // JSON input: the keys seen, comma-separated (for errors)
    bool seen_key[3 + 16]; // JSON input: whether any record had text / prompt / completion / template field k
} records;

static bool blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return false;
    return true;
}

// Warnings about skipped records: the first few, then only the counts.
#define MAX_SKIP_WARNINGS 5

// ---- --prompt-template ----

// The {name} fields of a template, in order: names[k] malloc'd. Returns the
// count, or -1 (logged) for an unclosed or empty brace. "{{" is a literal "{".
#define MAX_FIELDS 16
static int template_fields(const char *t, char **names) {
    int n = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '{' && p[1] == '{') { p++; continue; }
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        if (!e || e == p + 1 || n >= MAX_FIELDS) {
            qt_log_error("--prompt-template: %s at '%s' (fields are {name}; at most %d)", !e ? "unclosed {" : e == p + 1 ? "empty {}" : "too many fields", p, MAX_FIELDS);
            for (int k = 0; k < n; k++) qt_free(names[k]);
            return -1;
        }
        names[n] = qt_malloc((size_t)(e - p));
        memcpy(names[n], p + 1, (size_t)(e - p - 1));
        names[n][e - p - 1] = 0;
        n++;
        p = e;
    }
    return n;
}

// The template with field k replaced by vals[k] (NULL: empty), trailing
// whitespace dropped (an empty last field leaves no blank lines); NULL when
// every field is empty. malloc'd.
static char *render_template(const char *t, const char *const *vals, int n) {
    bool any = false;
    size_t cap = strlen(t) + 1;
    for (int k = 0; k < n; k++) {
        if (vals[k]) cap += strlen(vals[k]);
        any |= vals[k] && !blank(vals[k]);
    }
    if (!any) return NULL;
    char *out = qt_malloc(cap), *o = out;
    int k = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '{' && p[1] == '{') { *o++ = '{'; p++; continue; }
        if (p[0] == '}' && p[1] == '}') { *o++ = '}'; p++; continue; }
        if (*p != '{') { *o++ = *p; continue; }
        const char *v = vals[k++];
        if (v) { size_t l = strlen(v); memcpy(o, v, l); o += l; }
        p = strchr(p, '}');
    }
    while (o > out && strchr(" \t\r\n", o[-1])) o--;
    *o = 0;
    return out;
}

// "\n", "\t", "\\" written on a command line -> the characters.
static char *unescape_dup(const char *s) {
    char *d = qt_strdup(s), *o = d;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
            p++;
            *o++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : '\\';
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return d;
}

// "file:line", or "file: record k" for the k-th element of a JSON array (line = -k).
static const char *where(char *buf, size_t n, const char *name, int line) {
    if (line >= 0) snprintf(buf, n, "%s:%d", name, line);
    else snprintf(buf, n, "%s: record %d", name, -line);
    return buf;
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
        if (R->n_empty < MAX_SKIP_WARNINGS) qt_log_warn("%s: empty record skipped", where(w, sizeof(w), name, line));
        else if (R->n_empty == MAX_SKIP_WARNINGS) qt_log_warn("more empty records: counted, not listed");
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
        char cols[2048];
        size_t n = 0;
        cols[0] = 0;
        for (int i = 0; i < t->rows[0].n_fields; i++)
            n += (size_t)snprintf(cols + n, n < sizeof(cols) ? sizeof(cols) - n : 0, "%s%s", i ? ", " : "", t->rows[0].fields[i]);
        qt_log_error("%s:1: no column '%s' in the header (%s); the columns are: %s", name, col, flag, cols);
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
    int rc = QT_ERR, ct = -1, cp = -1, cc = -1, n_tf = 0, tcol[MAX_FIELDS];
    char *tf[MAX_FIELDS];
    if (o->fmt == FMT_TEXT) {
        if ((ct = need_col(t, path, o->text_col, "--text-col")) < 0) goto done;
    } else {
        if (o->prompt_template) {
            if ((n_tf = template_fields(o->prompt_template, tf)) < 0) { n_tf = 0; goto done; }
            for (int k = 0; k < n_tf; k++)
                if ((tcol[k] = need_col(t, path, tf[k], "--prompt-template")) < 0) goto done;
        } else if ((cp = need_col(t, path, o->prompt_col, "--prompt-col")) < 0) {
            goto done;
        }
        if ((cc = need_col(t, path, o->completion_col, "--completion-col")) < 0) goto done;
    }
    for (int i = 1; i < t->n_rows; i++) {
        char **f = t->rows[i].fields;
        char *prompt = NULL;
        if (o->prompt_template) {
            const char *vals[MAX_FIELDS];
            for (int k = 0; k < n_tf; k++) vals[k] = f[tcol[k]];
            prompt = render_template(o->prompt_template, vals, n_tf);
        }
        add_record(R, path, t->rows[i].line, o, ct >= 0 ? f[ct] : NULL, prompt ? prompt : cp >= 0 ? f[cp] : NULL,
                   cc >= 0 ? f[cc] : NULL, NULL);
        qt_free(prompt);
    }
    rc = QT_OK;
done:
    for (int k = 0; k < n_tf; k++) qt_free(tf[k]);
    qt_csv_free(t);
    return rc;
}

static const char *str_field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Remembers the keys of j (for an error listing them) and which wanted ones it has.
static void note_keys(records *R, const cJSON *j, const char *const *want, int n_want) {
    for (const cJSON *e = j->child; e; e = e->next) {
        char pat[200];
        snprintf(pat, sizeof(pat), ",%s,", e->string);
        char have[1040];
        snprintf(have, sizeof(have), ",%s,", R->keys);
        if (!strstr(have, pat)) {
            size_t l = strlen(R->keys);
            snprintf(R->keys + l, sizeof(R->keys) - l, "%s%s", l ? "," : "", e->string);
        }
    }
    for (int k = 0; k < n_want; k++)
        if (want[k] && cJSON_GetObjectItemCaseSensitive(j, want[k])) R->seen_key[k] = true;
}

static int json_record(const char *path, int line, const cJSON *j, const prep_opts *o, char *const *tf, int n_tf,
                       records *R) {
    char w[4200];
    where(w, sizeof(w), path, line);
    if (!cJSON_IsObject(j)) {
        qt_log_error("%s: a record must be a JSON object", w);
        return QT_ERR;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const char *keys[3 + MAX_FIELDS] = { o->text_col, o->prompt_col, o->completion_col };
    for (int k = 0; k < n_tf; k++) keys[3 + k] = tf[k];
    for (int k = 0; k < 3 + n_tf; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
            qt_log_error("%s: \"%s\" must be a string", w, keys[k]);
            return QT_ERR;
        }
    }
    note_keys(R, j, keys, 3 + n_tf);
    if (o->fmt == FMT_CHAT && msgs && !cJSON_IsArray(msgs)) {
        qt_log_error("%s: \"messages\" must be an array", w);
        return QT_ERR;
    }
    char *prompt = NULL;
    if (o->prompt_template) {
        const char *vals[MAX_FIELDS];
        for (int k = 0; k < n_tf; k++) vals[k] = str_field(j, tf[k]);
        prompt = render_template(o->prompt_template, vals, n_tf);
    }
    add_record(R, path, line, o, str_field(j, o->text_col), prompt ? prompt : str_field(j, o->prompt_col),
               str_field(j, o->completion_col), o->fmt == FMT_CHAT ? msgs : NULL);
    qt_free(prompt);
    return QT_OK;
}

// After reading JSON: a wanted key no record has is a misspelt option.
static int check_keys(const char *path, const prep_opts *o, char *const *tf, int n_tf, const records *R, bool chat_msgs) {
    const char *keys[3 + MAX_FIELDS] = { o->text_col, o->prompt_col, o->completion_col };
    const char *flags[3] = { "--text-col", "--prompt-col", "--completion-col" };
    for (int k = 0; k < n_tf; k++) keys[3 + k] = tf[k];
    for (int k = 0; k < 3 + n_tf; k++) {
        bool needed = o->fmt == FMT_TEXT ? k == 0 : k == 2 || (k == 1 && !o->prompt_template) || k >= 3;
        if (chat_msgs && o->fmt == FMT_CHAT) needed = false;
        if (!needed || R->seen_key[k]) continue;
        qt_log_error("%s: no record has the key \"%s\" (%s); the keys are: %s", path, keys[k],
                     k < 3 ? flags[k] : "--prompt-template", R->keys[0] ? R->keys : "(none)");
        return QT_ERR;
    }
    return QT_OK;
}

static int read_json(const char *path, bool lines, const prep_opts *o, records *R) {
    size_t n;
    char *tf[MAX_FIELDS];
    int n_tf = o->prompt_template ? template_fields(o->prompt_template, tf) : 0;
    if (n_tf < 0) return QT_ERR;
    char *data = qt_read_file(path, &n);
    int rc = QT_ERR;
    bool any_msgs = false;
    if (!data) goto done;
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
            any_msgs |= cJSON_GetObjectItemCaseSensitive(j, "messages") != NULL;
            int e = json_record(path, line, j, o, tf, n_tf, R);
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
            any_msgs |= cJSON_GetObjectItemCaseSensitive(e, "messages") != NULL;
            if (json_record(path, -k, e, o, tf, n_tf, R) != QT_OK) { cJSON_Delete(j); goto done; }
        }
        cJSON_Delete(j);
    }
    rc = check_keys(path, o, tf, n_tf, R, any_msgs);
done:
    for (int k = 0; k < n_tf; k++) qt_free(tf[k]);
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
    const char *out = NULL, *format = "completions", *split = "0.8,0.1,0.1", *input_type = NULL, *prompt_template = NULL;
    prep_opts o = { .prompt_col = "prompt", .completion_col = "completion", .text_col = "text" };
    uint64_t seed = 0;
    int verbose = 1;
    const qt_opt opts[] = {
        { "output", 'o', QT_OPT_STR, &out, "DIR", "folder for train.jsonl, valid.jsonl, test.jsonl (created)" },
        { "format", 'f', QT_OPT_STR, &format, "NAME", "text | completions | chat (default completions)" },
        { "prompt-col", 0, QT_OPT_STR, &o.prompt_col, "NAME", "column / key of the prompt (default prompt); A,B joins columns with a blank line" },
        { "prompt-template", 0, QT_OPT_STR, &prompt_template, "TEXT", "the prompt from several columns / keys: \"{instruction}\\n\\n{context}\"" },
        { "completion-col", 0, QT_OPT_STR, &o.completion_col, "NAME", "column / key of the answer (default completion)" },
        { "text-col", 0, QT_OPT_STR, &o.text_col, "NAME", "column / key of the text for --format text (default text)" },
        { "system", 0, QT_OPT_STR, &o.system, "TEXT", "--format chat: a system message for every conversation" },
        { "split", 0, QT_OPT_STR, &split, "T,V,E", "fractions for train, valid, test (default 0.8,0.1,0.1)" },
        { "seed", 's', QT_OPT_U64, &seed, "S", "shuffle seed (default 0)" },
        { "type", 0, QT_OPT_STR, &input_type, "EXT", "input type when the extension does not tell: csv|tsv|json|jsonl" },
        QT_CLI_VERBOSE_OPT(verbose),
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
    char *tmpl = NULL;
    if (prompt_template) {
        tmpl = unescape_dup(prompt_template);
    } else if (strchr(o.prompt_col, ',')) {
        // --prompt-col instruction,context: those columns joined by a blank line
        size_t cap = 3 * strlen(o.prompt_col) + 8;
        tmpl = qt_malloc(cap);
        char *t = tmpl;
        for (const char *p = o.prompt_col; *p;) {
            size_t l = strcspn(p, ",");
            t += sprintf(t, "%s{%.*s}", t == tmpl ? "" : "\n\n", (int)l, p);
            p += l;
            if (*p == ',') p++;
        }
    }
    o.prompt_template = tmpl;
    records R = { 0 };
    int rc = QT_ERR;
    if (!strcmp(type, "csv")) rc = read_csv(in, ',', &o, &R);
    else if (!strcmp(type, "tsv")) rc = read_csv(in, '\t', &o, &R);
    else if (!strcmp(type, "json")) rc = read_json(in, false, &o, &R);
    else if (!strcmp(type, "jsonl")) rc = read_json(in, true, &o, &R);
    else {
        qt_log_error("qtune data prepare: --type must be csv, tsv, json or jsonl, not '%s'", type);
        qt_free(tmpl);
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
    qt_free(tmpl);
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
        { "max-seq-len", 0, QT_OPT_INT, &max_seq_len, "N", "count the records longer than N tokens (default 2048)", "--max-seq-length", "[2,10000000]" },
        { "mask-prompt", 0, QT_OPT_FLAG, &dopts.mask_prompt, NULL, "also count trained tokens as --mask-prompt would" },
        { "response-template", 0, QT_OPT_STR, &dopts.response_template, "TEXT", "\"text\" records: the answer starts after the last TEXT", "--response-marker" },
        { "parse-special", 0, QT_OPT_FLAG, &dopts.parse_special, NULL, "read <s>, </s>, ... in text records as special tokens", "--special" },
        { "chat-template", 0, QT_OPT_STR, &dopts.chat_template, "NAME", "template of \"messages\" records, as in train (default llama2)" },
        { "lengths", 0, QT_OPT_FLAG, &lengths, NULL, "print 'split line tokens' for every record" },
        QT_CLI_VERBOSE_OPT(verbose),
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
