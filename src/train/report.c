// report.c: DIR/report.html from a training run's files (report.h). Plots are
// hand-written SVG: one polyline per series, a circle with a <title> tooltip
// per point for short series, axes with "nice" ticks (1, 2, 5 x 10^k). Each
// <svg> carries its data ranges and plot box as data-* attributes and each
// polyline its series name, so tests (and users) can read the points back.
// After a resume the log repeats steps; a later point for the same or an
// earlier step replaces what was logged from that step on. Not here: PNG
// output, JavaScript interactivity, comparing several runs.
#include "train/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

// ---- a string builder ----

typedef struct {
    char *p;
    size_t n, cap;
} sb;

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)need + 1 > b->cap) {
        b->cap = (b->n + (size_t)need + 1) * 2;
        b->p = qt_realloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

static void sb_html(sb *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

// ---- series ----

typedef struct {
    const char *key;     // metrics.jsonl field
    const char *label;
    const char *color;
    double *x, *y;
    int n, cap;
} series;

static void series_add(series *s, double x, double y) {
    while (s->n > 0 && s->x[s->n - 1] >= x) s->n--;   // resumed run: the later log wins
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->x = qt_realloc(s->x, sizeof(double) * (size_t)s->cap);
        s->y = qt_realloc(s->y, sizeof(double) * (size_t)s->cap);
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

enum { W = 640, H = 300, ML = 70, MR = 20, MT = 30, MB = 45 };

// One chart of the given series (the ones with points) with a shared axis.
static void plot(sb *b, const char *id, const char *title, const char *ylabel, series **ss, int ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int total = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < ss[k]->n; i++) {
            if (!isfinite(ss[k]->y[i])) continue;
            x0 = fmin(x0, ss[k]->x[i]); x1 = fmax(x1, ss[k]->x[i]);
            y0 = fmin(y0, ss[k]->y[i]); y1 = fmax(y1, ss[k]->y[i]);
            total++;
        }
    sb_printf(b, "<h2>%s</h2>\n", title);
    if (!total) {
        sb_printf(b, "<p class=\"none\">no points logged yet</p>\n");
        return;
    }
    if (x1 <= x0) { x0 -= 1; x1 += 1; }
    if (y1 <= y0) { double d = fabs(y0) > 0 ? fabs(y0) * 0.1 : 1; y0 -= d; y1 += d; }
    double pad = (y1 - y0) * 0.05, dmin = y0;
    y0 -= pad;
    y1 += pad;
    if (dmin >= 0 && y0 < 0) y0 = 0;   // non-negative data keeps a non-negative axis
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(v) (ML + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (MT + (y1 - (v)) / (y1 - y0) * ph)
    sb_printf(b, "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "data-xmin=\"%.9g\" data-xmax=\"%.9g\" data-ymin=\"%.9g\" data-ymax=\"%.9g\" "
                 "data-plot=\"%d %d %g %g\">\n", id, W, H, W, H, x0, x1, y0, y1, ML, MT, pw, ph);
    sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" fill=\"#fff\" stroke=\"#999\"/>\n", ML, MT, pw, ph);
    // grid and tick labels
    double ys = nice_step(y1 - y0, 5), xs = nice_step(x1 - x0, 8);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-12; v += ys) {
        double py = PY(v);
        sb_printf(b, "<line x1=\"%d\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#eee\"/>"
                     "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" class=\"tick\">%.4g</text>\n",
                  ML, ML + pw, py, py, ML - 6, py + 4, fabs(v) < ys * 1e-9 ? 0.0 : v);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-12; v += xs) {
        double px = PX(v);
        sb_printf(b, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%g\" stroke=\"#eee\"/>"
                     "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\" class=\"tick\">%.6g</text>\n",
                  px, px, MT, MT + ph, px, MT + ph + 16, v);
    }
    sb_printf(b, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\" class=\"axis\">step</text>\n", ML + pw / 2, H - 6);
    sb_printf(b, "<text x=\"14\" y=\"%g\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 %g)\">%s</text>\n",
              MT + ph / 2, MT + ph / 2, ylabel);
    int lx = ML + 8;
    for (int k = 0; k < ns; k++) {
        series *s = ss[k];
        if (!s->n) continue;
        sb_printf(b, "<polyline class=\"series\" data-series=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"",
                  s->key, s->color, s->n > 200 ? "1" : "2");
        for (int i = 0; i < s->n; i++)
            if (isfinite(s->y[i])) sb_printf(b, "%s%.3f,%.3f", i ? " " : "", PX(s->x[i]), PY(s->y[i]));
        sb_printf(b, "\"/>\n");
        if (s->n <= 300)
            for (int i = 0; i < s->n; i++)
                if (isfinite(s->y[i]))
                    sb_printf(b, "<circle cx=\"%.3f\" cy=\"%.3f\" r=\"3\" fill=\"%s\"><title>%s, step %.0f: %.6g</title></circle>\n",
                              PX(s->x[i]), PY(s->y[i]), s->color, s->label, s->x[i], s->y[i]);
        sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" class=\"legend\">%s</text>\n",
                  lx, MT - 16, s->color, lx + 16, MT - 11, s->label);
        lx += 16 + 6 * (int)strlen(s->label) + 14;   // ~6 px per character at 11 px
    }
    sb_printf(b, "</svg>\n");
#undef PX
#undef PY
}

// A JSON file as a two-column table (scalars and short arrays).
static void json_table(sb *b, const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    fclose(f);
    char *text = qt_read_file(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    qt_free(text);
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return; }
    sb_printf(b, "<h3>%s</h3>\n<table>\n", file);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        char *v = NULL, num[64];
        if (cJSON_IsNumber(e)) {   // floats stored from a float: 0.002, not 0.0020000000949949026
            double x = e->valuedouble;
            snprintf(num, sizeof(num), x == floor(x) && fabs(x) < 1e15 ? "%.0f" : "%.7g", x);
            v = cJSON_malloc(strlen(num) + 1);
            memcpy(v, num, strlen(num) + 1);
        } else if (!cJSON_IsString(e)) {
            v = cJSON_PrintUnformatted(e);
        }
        sb_printf(b, "<tr><th>");
        sb_html(b, e->string ? e->string : "");
        sb_printf(b, "</th><td>");
        sb_html(b, v ? v : e->valuestring);
        sb_printf(b, "</td></tr>\n");
        cJSON_free(v);
    }
    sb_printf(b, "</table>\n");
    cJSON_Delete(j);
}

static const char *basename_of(const char *p) {
    const char *s = p + strlen(p);
    while (s > p && s[-1] == '/') s--;   // trailing slashes
    const char *e = s;
    while (s > p && s[-1] != '/') s--;
    static char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)(e - s), s);
    return name;
}

int qt_report_write(const char *dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    char *text = qt_read_file(path, NULL);
    if (!text) return QT_ERR;
    series S[] = {
        { "loss", "train loss (step)", "#9ecae1", 0, 0, 0, 0 },
        { "train_loss", "train loss (mean per report)", "#1f77b4", 0, 0, 0, 0 },
        { "val_loss", "validation loss", "#d62728", 0, 0, 0, 0 },
        { "test_loss", "test loss", "#2ca02c", 0, 0, 0, 0 },
        { "lr", "learning rate", "#9467bd", 0, 0, 0, 0 },
        { "tokens_per_s", "tokens/s", "#ff7f0e", 0, 0, 0, 0 },
        { "grad_norm", "gradient norm", "#8c564b", 0, 0, 0, 0 },
        { "peak_rss", "peak memory (GiB)", "#7f7f7f", 0, 0, 0, 0 },
    };
    const int NS = (int)QT_ARRAY_LEN(S);
    int n_lines = 0;
    for (char *s = text, *next; s && *s; s = next) {
        next = strchr(s, '\n');
        if (next) *next++ = 0;
        cJSON *j = cJSON_Parse(s);   // NULL for a line being written right now
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(st)) {
            n_lines++;
            for (int k = 0; k < NS; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, S[k].key);
                if (cJSON_IsNumber(v))
                    series_add(&S[k], st->valuedouble, !strcmp(S[k].key, "peak_rss") ? v->valuedouble / 1073741824.0 : v->valuedouble);
            }
        }
        cJSON_Delete(j);
    }
    qt_free(text);
    int rc = QT_ERR;
    sb b = { 0 };
    if (!n_lines) {
        qt_log_error("%s: no metrics logged yet", path);
        goto done;
    }
    const char *name = basename_of(dir);
    sb_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>qtune report: ");
    sb_html(&b, name);
    sb_printf(&b, "</title>\n<style>\nbody{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1340px;color:#222}\n"
                  "h1{font-size:22px}h2{font-size:16px;margin:18px 0 4px}h3{font-size:14px;margin:14px 0 4px}\n"
                  ".grid{display:flex;flex-wrap:wrap;gap:8px 24px}.grid>div{flex:0 0 640px}\n"
                  "svg text{font:11px system-ui,sans-serif;fill:#444}svg .axis{font-size:12px}\n"
                  "table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;border-bottom:1px solid #eee;"
                  "vertical-align:top}th{font-weight:600}td{font-family:ui-monospace,monospace;word-break:break-all}\n"
                  ".none{color:#888}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}\n"
                  "</style></head><body>\n<h1>qtune training report: ");
    sb_html(&b, name);
    sb_printf(&b, "</h1>\n");
    // final metrics
    sb_printf(&b, "<h2>Final metrics</h2>\n<table id=\"final\">\n");
    const struct { int k; const char *what; const char *fmt; } fin[] = {
        { 1, "train loss (last report)", "%.4f" }, { 2, "validation loss (last)", "%.4f" }, { 3, "test loss", "%.4f" },
        { 5, "tokens/s (last report)", "%.1f" }, { 7, "peak memory, GiB", "%.2f" },
    };
    double last_step = 0;
    for (int k = 0; k < NS; k++)
        if (S[k].n) last_step = fmax(last_step, S[k].x[S[k].n - 1]);
    sb_printf(&b, "<tr><th>steps</th><td>%.0f</td></tr>\n", last_step);
    for (size_t i = 0; i < QT_ARRAY_LEN(fin); i++) {
        series *s = &S[fin[i].k];
        if (!s->n) continue;
        sb_printf(&b, "<tr><th>%s</th><td>", fin[i].what);
        sb_printf(&b, fin[i].fmt, s->y[s->n - 1]);
        if (fin[i].k == 2 || fin[i].k == 3) sb_printf(&b, " (perplexity %.3f)", exp(s->y[s->n - 1]));
        sb_printf(&b, "</td></tr>\n");
    }
    sb_printf(&b, "</table>\n<div class=\"grid\">\n<div>");
    series *loss[] = { &S[0], &S[1], &S[2], &S[3] };
    plot(&b, "plot-loss", "Loss", "loss", loss, 4);
    sb_printf(&b, "</div><div>");
    series *lr[] = { &S[4] };
    plot(&b, "plot-lr", "Learning rate", "learning rate", lr, 1);
    sb_printf(&b, "</div><div>");
    series *tps[] = { &S[5] };
    plot(&b, "plot-speed", "Training speed", "tokens/s", tps, 1);
    sb_printf(&b, "</div><div>");
    series *gn[] = { &S[6] };
    plot(&b, "plot-grad", "Gradient norm", "norm", gn, 1);
    sb_printf(&b, "</div>\n</div>\n<h2>Configuration</h2>\n");
    json_table(&b, dir, "training_state.json");
    json_table(&b, dir, "adapter_config.json");
    // the end of the human-readable log
    snprintf(path, sizeof(path), "%s/train.log", dir);
    FILE *lf = fopen(path, "rb");
    if (lf) {
        fclose(lf);
        char *log = qt_read_file(path, NULL);
        if (log) {
            const char *p = log + strlen(log);
            for (int nl = 0; p > log; p--)
                if (p[-1] == '\n' && ++nl > 25) break;
            sb_printf(&b, "<h2>train.log (last lines)</h2>\n<pre>");
            sb_html(&b, p);
            sb_printf(&b, "</pre>\n");
            qt_free(log);
        }
    }
    sb_printf(&b, "<p class=\"none\">written by qtune report from %s/metrics.jsonl</p>\n</body></html>\n", name);
    snprintf(path, sizeof(path), "%s/report.html", dir);
    rc = qt_write_file_atomic(path, b.p, b.n);
done:
    qt_free(b.p);
    for (int k = 0; k < NS; k++) {
        qt_free(S[k].x);
        qt_free(S[k].y);
    }
    return rc;
}
