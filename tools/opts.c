// opts.c: table-driven option parsing for every command: --name VALUE,
// --name=VALUE, -x VALUE, flags, and positional arguments. Numbers are parsed
// strictly (the whole string, within range) so that a typo is an error, not 0.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "cli.h"

void qt_opts_usage(const qt_cmd_spec *spec) {
    printf("usage: qtune %s %s\n\n%s\n\noptions:\n", spec->name, spec->synopsis, spec->summary);
    for (const qt_opt *o = spec->opts; o && o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-28s %s\n", left, o->help);
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
}

static int set_value(const qt_cmd_spec *spec, const qt_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case QT_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case QT_OPT_STRS: {
        qt_opt_strs *l = o->dst;
        if (l->n >= QT_OPT_MAX_REPEAT) {
            fprintf(stderr, "error: qtune %s: --%s given more than %d times\n", spec->name, o->name, QT_OPT_MAX_REPEAT);
            return -1;
        }
        l->v[l->n++] = v;
        return 0;
    }
    case QT_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case QT_OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') break;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    case QT_OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        *(float *)o->dst = x;
        return 0;
    }
    case QT_OPT_FLAG:
        break;
    }
    fprintf(stderr, "error: qtune %s: invalid value '%s' for --%s (expected %s)\n", spec->name, v, o->name,
            o->kind == QT_OPT_FLOAT ? "a number" : "an integer");
    return -1;
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
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (const qt_opt *p = spec->opts; p && p->name; p++)
                if (strlen(p->name) == len && !strncmp(p->name, name, len)) { o = p; break; }
            if (eq) inline_val = eq + 1;
        } else if (a[2] == 0) {
            for (const qt_opt *p = spec->opts; p && p->name; p++)
                if (p->short_name == a[1]) { o = p; break; }
        }
        if (!o) {
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
        const char *v = inline_val;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: qtune %s: option --%s needs a value (%s)\n", spec->name, o->name,
                        o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            v = argv[++i];
        }
        if (set_value(spec, o, v) != 0) return -1;
    }
    if (*n_pos < spec->min_pos) {
        fprintf(stderr, "error: qtune %s: missing argument (usage: qtune %s %s)\n", spec->name, spec->name,
                spec->synopsis);
        return -1;
    }
    return 0;
}

static char *opt_dup(const char *prefix, const char *s) {
    size_t n = strlen(prefix) + strlen(s) + 1;
    char *d = qt_malloc(n);
    snprintf(d, n, "%s%s", prefix, s);
    return d;
}

int qt_opts_expand_config(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv) {
    const char *path = NULL;
    int skip = -1;   // index of "--config" in argv
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) { path = argv[i + 1]; skip = i; break; }
        if (!strncmp(argv[i], "--config=", 9)) { path = argv[i] + 9; skip = i; break; }
    }
    // every argument is copied so the result can be freed uniformly
    size_t cap = (size_t)argc + 1;
    char **out = qt_malloc(sizeof(char *) * cap);
    int n = 0;
    cJSON *j = NULL;
    if (path) {
        char *text = qt_read_file(path, NULL);
        if (!text) goto fail;
        j = cJSON_Parse(text);
        qt_free(text);
        if (!cJSON_IsObject(j)) {
            fprintf(stderr, "error: qtune %s: %s: not a JSON object of options\n", cmd, path);
            goto fail;
        }
        for (cJSON *e = j->child; e; e = e->next) {
            char key[128];
            snprintf(key, sizeof(key), "%s", e->string);
            for (char *k = key; *k; k++) if (*k == '_') *k = '-';
            char val[512] = "";
            bool flag = false;
            if (cJSON_IsBool(e)) {
                if (cJSON_IsFalse(e)) continue;
                flag = true;
            } else if (cJSON_IsNumber(e)) {
                snprintf(val, sizeof(val), "%.17g", e->valuedouble);
            } else if (cJSON_IsString(e)) {
                snprintf(val, sizeof(val), "%s", e->valuestring);
            } else if (cJSON_IsArray(e)) {
                size_t len = 0;
                for (cJSON *a = e->child; a; a = a->next) {
                    if (!cJSON_IsString(a)) {
                        fprintf(stderr, "error: qtune %s: %s: \"%s\": arrays may hold strings only\n", cmd, path, e->string);
                        goto fail;
                    }
                    len += (size_t)snprintf(val + len, len < sizeof(val) ? sizeof(val) - len : 0, "%s%s", len ? "," : "",
                                            a->valuestring);
                }
            } else {
                fprintf(stderr, "error: qtune %s: %s: \"%s\" must be a number, string, boolean or list\n", cmd, path,
                        e->string);
                goto fail;
            }
            cap += 2;
            out = qt_realloc(out, sizeof(char *) * cap);
            out[n++] = opt_dup("--", key);
            if (!flag) out[n++] = opt_dup("", val);
        }
        cJSON_Delete(j);
        j = NULL;
    }
    for (int i = 0; i < argc; i++) {
        if (i == skip) { i += !strcmp(argv[i], "--config"); continue; }
        out[n++] = opt_dup("", argv[i]);
    }
    out[n] = NULL;
    *out_argc = n;
    *out_argv = out;
    return 0;
fail:
    cJSON_Delete(j);
    qt_opts_free_config(n, out);
    return -1;
}

void qt_opts_free_config(int argc, char **argv) {
    for (int i = 0; i < argc; i++) qt_free(argv[i]);
    qt_free(argv);
}
