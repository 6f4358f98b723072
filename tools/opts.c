// opts.c: table-driven option parsing for every command: --name VALUE,
// --name=VALUE, -x VALUE, flags, aliases (other tools' spellings, also
// single-dash words like llama.cpp's -sys), two-value options, and positional
// arguments. Numbers are parsed strictly (the whole string, finite, within the
// option's range) so that a typo is an error, not 0; an unknown flag gets the
// closest known spelling as a suggestion. Also the --config / -c files (JSON,
// or YAML through libyaml as mlx_lm.lora reads them).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "base/base.h"
#include "cli.h"

// ---- help ----

void qt_opts_usage(const qt_cmd_spec *spec) {
    printf("usage: qtune %s %s\n\n%s\n\noptions:\n", spec->name, spec->synopsis, spec->summary);
    for (const qt_opt *o = spec->opts; o && o->name; o++) {
        char left[96];
        if (o->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        if (strlen(left) > 28) printf("  %s\n  %-28s %s", left, "", o->help);
        else printf("  %-28s %s", left, o->help);
        if (o->aliases) printf(" [also %s]", o->aliases);
        printf("\n");
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
}

// ---- typo suggestions ----

// Optimal string alignment distance (edits and adjacent transpositions).
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = a[i - 1] != b[j - 1];
            int v = QT_MIN(d[i - 1][j] + 1, QT_MIN(d[i][j - 1] + 1, d[i - 1][j - 1] + c));
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) v = QT_MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *qt_cli_closest(const char *s, const char *const *names, int n) {
    const char *best = NULL;
    int best_d = 1 << 20;
    for (int i = 0; i < n; i++) {
        int dist = edit_distance(s, names[i]);
        if (dist < best_d) { best_d = dist; best = names[i]; }
    }
    // a likely typo: at most 2 edits, or a third of the word
    int len = (int)strlen(s);
    if (!best || best_d > QT_MAX(2, len / 3) || best_d >= len) return NULL;
    return best;
}

// Every spelling of every option ("--iters", "-m", "--lora-layers", "-sys"),
// written into buf; pointers into buf in names. Returns the count.
static int all_spellings(const qt_cmd_spec *spec, char *buf, size_t cap, const char **names, int max) {
    int n = 0;
    size_t used = 0;
    for (const qt_opt *o = spec->opts; o && o->name && n < max; o++) {
        char one[256];
        int k = snprintf(one, sizeof(one), "--%s", o->name);
        if (used + (size_t)k + 1 <= cap) { memcpy(buf + used, one, (size_t)k + 1); names[n++] = buf + used; used += (size_t)k + 1; }
        if (o->short_name && n < max && used + 3 <= cap) {
            buf[used] = '-'; buf[used + 1] = o->short_name; buf[used + 2] = 0;
            names[n++] = buf + used;
            used += 3;
        }
        for (const char *p = o->aliases; p && *p && n < max;) {
            while (*p == ' ') p++;
            size_t l = strcspn(p, " ");
            if (l && used + l + 1 <= cap) {
                memcpy(buf + used, p, l);
                buf[used + l] = 0;
                names[n++] = buf + used;
                used += l + 1;
            }
            p += l;
        }
    }
    return n;
}

// ---- ranges ----

typedef struct {
    double lo, hi;
    bool lo_open, hi_open;
} range;

static bool parse_range(const char *s, range *r) {
    if (!s) return false;
    char lo[32], hi[32], cl;
    char op = s[0];
    if ((op != '[' && op != '(') || sscanf(s + 1, "%31[^,],%31[^])]%c", lo, hi, &cl) != 3) return false;
    r->lo_open = op == '(';
    r->hi_open = cl == ')';
    r->lo = !strcmp(lo, "-inf") ? -INFINITY : strtod(lo, NULL);
    r->hi = !strcmp(hi, "inf") ? INFINITY : strtod(hi, NULL);
    return true;
}

static bool in_range(const range *r, double x) {
    if (r->lo_open ? !(x > r->lo) : !(x >= r->lo)) return false;
    if (r->hi_open ? !(x < r->hi) : !(x <= r->hi)) return false;
    return true;
}

// "0 < P <= 1", "N >= 1", ...
static void describe_range(const range *r, const char *var, char *buf, size_t n) {
    char lo[32] = "", hi[32] = "";
    if (isfinite(r->lo)) snprintf(lo, sizeof(lo), "%g %s ", r->lo, r->lo_open ? "<" : "<=");
    if (isfinite(r->hi)) snprintf(hi, sizeof(hi), " %s %g", r->hi_open ? "<" : "<=", r->hi);
    if (lo[0] && !hi[0]) snprintf(buf, n, "%s %s %g", var, r->lo_open ? ">" : ">=", r->lo);
    else snprintf(buf, n, "%s%s%s", lo, var, hi);
}

// ---- parsing ----

// typed: the flag as the user wrote it ("-n", "--max-tokens"), for messages.
static int set_value(const qt_cmd_spec *spec, const qt_opt *o, const char *typed, const char *v, const char *v2) {
    char *end = NULL;
    double num = 0;
    errno = 0;
    switch (o->kind) {
    case QT_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case QT_OPT_STRS:
    case QT_OPT_STRS2: {
        qt_opt_strs *l = o->dst;
        if (l->n >= QT_OPT_MAX_REPEAT) {
            fprintf(stderr, "error: qtune %s: --%s given more than %d times\n", spec->name, o->name, QT_OPT_MAX_REPEAT);
            return -1;
        }
        l->arg2[l->n] = v2;
        l->v[l->n++] = v;
        return 0;
    }
    case QT_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) goto bad;
        *(int *)o->dst = (int)x;
        num = (double)x;
        break;
    }
    case QT_OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') goto bad;
        *(uint64_t *)o->dst = x;
        num = (double)x;
        break;
    }
    case QT_OPT_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || fabs(x) > 3.0e38) goto bad;
        *(float *)o->dst = (float)x;
        num = x;
        break;
    }
    case QT_OPT_FLAG:
        goto bad;
    }
    range r;
    if (parse_range(o->range, &r) && !in_range(&r, num)) {
        char want[96];
        describe_range(&r, o->metavar ? o->metavar : "value", want, sizeof(want));
        fprintf(stderr, "error: qtune %s: %s %s is out of range (expected %s)\n", spec->name, typed, v, want);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "error: qtune %s: invalid value '%s' for %s (expected %s)\n", spec->name, v, typed,
            o->kind == QT_OPT_FLOAT ? "a finite number" : o->kind == QT_OPT_U64 ? "a non-negative integer" : "an integer");
    return -1;
}

// Whether the long name (without dashes, before any '=') of length len is
// `want`, '_' matching '-'.
static bool long_eq(const char *name, size_t len, const char *want) {
    if (strlen(want) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i] == '_' ? '-' : name[i];
        if (c != want[i]) return false;
    }
    return true;
}

// Whether the alias list holds `a` (long aliases compare up to len, the part
// before '=').
static bool alias_eq(const char *aliases, const char *a, size_t len) {
    for (const char *p = aliases; p && *p;) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        if (l > 2 && p[0] == '-' && p[1] == '-' && a[1] == '-') {
            char w[128];
            if (l - 2 < sizeof(w)) {
                memcpy(w, p + 2, l - 2);
                w[l - 2] = 0;
                if (long_eq(a + 2, len - 2, w)) return true;
            }
        } else if (l == len && !strncmp(p, a, l)) {
            return true;
        }
        p += l;
    }
    return false;
}

int qt_opts_parse(const qt_cmd_spec *spec, int argc, char **argv, char **pos, int *n_pos) {
    *n_pos = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            qt_opts_usage(spec);
            return 1;
        }
        if (!only_pos && !strcmp(a, "--")) { only_pos = true; continue; }
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (*n_pos >= spec->max_pos) {
                fprintf(stderr, "error: qtune %s: unexpected argument '%s' (see qtune %s --help)\n", spec->name, a,
                        spec->name);
                return -1;
            }
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        const qt_opt *o = NULL;
        const char *inline_val = NULL;
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        for (const qt_opt *p = spec->opts; p && p->name && !o; p++) {
            if (a[1] == '-' && long_eq(a + 2, len - 2, p->name)) o = p;
            else if (a[1] != '-' && a[2] == 0 && p->short_name == a[1]) o = p;
            else if (alias_eq(p->aliases, a, len)) o = p;
        }
        if (eq && o) inline_val = eq + 1;
        if (!o) {
            char buf[4096], given[128];
            const char *names[256];
            int n = all_spellings(spec, buf, sizeof(buf), names, 256);
            snprintf(given, sizeof(given), "%.*s", (int)QT_MIN(len, sizeof(given) - 1), a);
            const char *close = qt_cli_closest(given, names, n);
            if (close)
                fprintf(stderr, "error: qtune %s: unknown option '%s' (did you mean %s? see qtune %s --help)\n", spec->name,
                        a, close, spec->name);
            else
                fprintf(stderr, "error: qtune %s: unknown option '%s' (see qtune %s --help)\n", spec->name, a, spec->name);
            return -1;
        }
        if (o->kind == QT_OPT_FLAG) {
            if (inline_val) {
                fprintf(stderr, "error: qtune %s: option --%s takes no value\n", spec->name, o->name);
                return -1;
            }
            *(bool *)o->dst = true;
            continue;
        }
        const char *v = inline_val, *v2 = NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: qtune %s: option --%s needs a value (%s)\n", spec->name, o->name,
                        o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            v = argv[++i];
        }
        if (o->kind == QT_OPT_STRS2) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: qtune %s: option %.*s needs two values (%s)\n", spec->name, (int)len, a,
                        o->metavar ? o->metavar : "VALUE VALUE");
                return -1;
            }
            v2 = argv[++i];
        }
        char typed[128];
        snprintf(typed, sizeof(typed), "%.*s", (int)QT_MIN(len, sizeof(typed) - 1), a);
        if (set_value(spec, o, typed, v, v2) != 0) return -1;
    }
    if (*n_pos < spec->min_pos) {
        fprintf(stderr, "error: qtune %s: missing argument (usage: qtune %s %s)\n", spec->name, spec->name,
                spec->synopsis);
        return -1;
    }
    return 0;
}

// ---- --config files ----

static char *opt_dup(const char *prefix, const char *s) {
    size_t n = strlen(prefix) + strlen(s) + 1;
    char *d = qt_malloc(n);
    snprintf(d, n, "%s%s", prefix, s);
    return d;
}

typedef struct {
    char **v;
    int n, cap;
} argvec;

static void av_push(argvec *a, char *s) {
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? 2 * a->cap : 32;
        a->v = qt_realloc(a->v, sizeof(char *) * (size_t)a->cap);
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

// One option from a config key: "learning_rate" -> "--learning-rate VALUE";
// flag: true -> the bare flag.
static void add_kv(argvec *a, const char *key, const char *val, bool flag) {
    char k[160];
    snprintf(k, sizeof(k), "%s", key);
    for (char *p = k; *p; p++) if (*p == '_') *p = '-';
    av_push(a, opt_dup("--", k));
    if (!flag) av_push(a, opt_dup("", val));
}

static int config_json(const char *cmd, const char *path, const char *text, argvec *a) {
    cJSON *j = cJSON_Parse(text);
    int rc = -1;
    if (!cJSON_IsObject(j)) {
        fprintf(stderr, "error: qtune %s: %s: not a JSON object of options\n", cmd, path);
        goto done;
    }
    for (cJSON *e = j->child; e; e = e->next) {
        char val[1024] = "";
        if (cJSON_IsBool(e)) {
            if (cJSON_IsTrue(e)) add_kv(a, e->string, NULL, true);
            continue;
        }
        if (cJSON_IsNull(e)) continue;
        if (cJSON_IsNumber(e)) {
            snprintf(val, sizeof(val), "%.17g", e->valuedouble);
        } else if (cJSON_IsString(e)) {
            snprintf(val, sizeof(val), "%s", e->valuestring);
        } else if (cJSON_IsArray(e)) {
            size_t len = 0;
            for (cJSON *x = e->child; x; x = x->next) {
                if (!cJSON_IsString(x)) {
                    fprintf(stderr, "error: qtune %s: %s: \"%s\": arrays may hold strings only\n", cmd, path, e->string);
                    goto done;
                }
                len += (size_t)snprintf(val + len, len < sizeof(val) ? sizeof(val) - len : 0, "%s%s", len ? "," : "",
                                        x->valuestring);
            }
        } else {
            fprintf(stderr, "error: qtune %s: %s: \"%s\" must be a number, string, boolean or list\n", cmd, path,
                    e->string);
            goto done;
        }
        add_kv(a, e->string, val, false);
    }
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

static const char *yscalar(yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL; }

static bool yaml_is_true(const char *s) { return !strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "on"); }
static bool yaml_is_false(const char *s) { return !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no") || !strcmp(s, "off"); }
static bool yaml_is_null(yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = yscalar(n);
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null");
}

// A YAML list of scalars, comma-joined into val; mlx-lm's lora keys
// ("self_attn.q_proj") lose their module prefix. false when it holds non-scalars.
static bool yaml_join(yaml_document_t *d, yaml_node_t *n, char *val, size_t cap) {
    size_t len = 0;
    val[0] = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *s = yscalar(yaml_document_get_node(d, *it));
        if (!s) return false;
        const char *dot = strrchr(s, '.');
        if (dot) s = dot + 1;
        len += (size_t)snprintf(val + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "", s);
    }
    return true;
}

static int config_yaml(const char *cmd, const char *path, const char *text, size_t size, argvec *a) {
    yaml_parser_t p;
    yaml_document_t d;
    int rc = -1;
    if (!yaml_parser_initialize(&p)) return -1;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, size);
    if (!yaml_parser_load(&p, &d)) {
        fprintf(stderr, "error: qtune %s: %s:%zu: invalid YAML: %s\n", cmd, path, p.problem_mark.line + 1,
                p.problem ? p.problem : "?");
        yaml_parser_delete(&p);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (!root || root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "error: qtune %s: %s: expected a mapping of options (key: value)\n", cmd, path);
        goto done;
    }
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(&d, pr->key), *vn = yaml_document_get_node(&d, pr->value);
        const char *key = yscalar(kn);
        char val[1024];
        size_t line = vn->start_mark.line + 1;
        if (!key) {
            fprintf(stderr, "error: qtune %s: %s:%zu: keys must be plain names\n", cmd, path, kn->start_mark.line + 1);
            goto done;
        }
        if (yaml_is_null(vn)) continue;
        if (vn->type == YAML_SCALAR_NODE) {
            const char *s = yscalar(vn);
            bool plain = vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            if (plain && yaml_is_true(s)) add_kv(a, key, NULL, true);
            else if (!(plain && yaml_is_false(s))) add_kv(a, key, s, false);
        } else if (vn->type == YAML_SEQUENCE_NODE) {
            if (!yaml_join(&d, vn, val, sizeof(val))) {
                fprintf(stderr, "error: qtune %s: %s:%zu: \"%s\": lists may hold plain values only\n", cmd, path, line, key);
                goto done;
            }
            add_kv(a, key, val, false);
        } else if (!strcmp(key, "lora_parameters") || !strcmp(key, "lr_schedule")) {
            // mlx-lm: lora_parameters {rank, alpha | scale, dropout, keys}; lr_schedule {name, warmup, arguments}
            bool lora = key[1] == 'o';
            for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
                const char *k2 = yscalar(yaml_document_get_node(&d, q->key));
                yaml_node_t *v2 = yaml_document_get_node(&d, q->value);
                if (!k2 || yaml_is_null(v2)) continue;
                const char *s2 = yscalar(v2);
                if (lora && !strcmp(k2, "keys") && v2->type == YAML_SEQUENCE_NODE && yaml_join(&d, v2, val, sizeof(val))) {
                    add_kv(a, "targets", val, false);
                } else if (lora && s2 && (!strcmp(k2, "rank") || !strcmp(k2, "alpha") || !strcmp(k2, "scale") ||
                                          !strcmp(k2, "dropout"))) {
                    snprintf(val, sizeof(val), "lora-%s", k2);
                    add_kv(a, val, s2, false);
                } else if (!lora && s2 && !strcmp(k2, "name")) {
                    const char *nm = !strcmp(s2, "cosine_decay") ? "cosine" : !strcmp(s2, "linear_schedule") ? "linear" : s2;
                    add_kv(a, "lr-schedule", nm, false);
                } else if (!lora && s2 && !strcmp(k2, "warmup")) {
                    add_kv(a, "warmup", s2, false);
                } else if (!lora && (!strcmp(k2, "arguments") || !strcmp(k2, "warmup_init"))) {
                    continue;   // the peak rate is --learning-rate; the decay length is the run's
                } else {
                    fprintf(stderr, "error: qtune %s: %s:%zu: %s.%s is not supported (%s)\n", cmd, path,
                            v2->start_mark.line + 1, key, k2,
                            lora ? "lora_parameters takes rank, alpha, scale, dropout, keys"
                                 : "lr_schedule takes name (cosine_decay, linear_schedule) and warmup");
                    goto done;
                }
            }
        } else {
            fprintf(stderr, "error: qtune %s: %s:%zu: \"%s\" must be a value or a list\n", cmd, path, line, key);
            goto done;
        }
    }
    rc = 0;
done:
    yaml_document_delete(&d);
    yaml_parser_delete(&p);
    return rc;
}

int qt_opts_expand_config(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv) {
    const char *path = NULL;
    int skip = -1, skip_n = 0;   // index and length of "--config FILE" in argv
    for (int i = 0; i < argc && !path; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc) { path = argv[i + 1]; skip = i; skip_n = 2; }
        else if (!strncmp(argv[i], "--config=", 9)) { path = argv[i] + 9; skip = i; skip_n = 1; }
        else if (!strcmp(argv[i], "--")) break;
    }
    argvec a = { 0 };
    av_push(&a, NULL);   // keeps a.v allocated even when empty
    a.n = 0;
    if (path) {
        size_t size = 0;
        char *text = qt_read_file(path, &size);
        if (!text) goto fail;
        const char *t = text;
        while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r') t++;
        int e = *t == '{' ? config_json(cmd, path, text, &a) : config_yaml(cmd, path, text, size, &a);
        qt_free(text);
        if (e != 0) goto fail;
    }
    for (int i = 0; i < argc; i++) {
        if (i == skip) { i += skip_n - 1; continue; }
        av_push(&a, opt_dup("", argv[i]));
    }
    *out_argc = a.n;
    *out_argv = a.v;
    return 0;
fail:
    qt_opts_free_config(a.n, a.v);
    return -1;
}

void qt_opts_free_config(int argc, char **argv) {
    for (int i = 0; i < argc; i++) qt_free(argv[i]);
    qt_free(argv);
}
