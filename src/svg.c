/* The SVG chart writer (src/svg.h). */
#include "src/svg.h"
#include <math.h>
#include <string.h>

void ds_xml_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

int ds_svg_ticks(double lo, double hi, int want, double *first, double *step)
{
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi < lo) { double t = lo; lo = hi; hi = t; }
    if (hi - lo < 1e-12 * fmax(1, fmax(fabs(lo), fabs(hi)))) {
        double pad = lo != 0 ? fabs(lo) * 0.05 : 1;
        lo -= pad, hi += pad;
    }
    if (want < 2) want = 2;
    double raw = (hi - lo) / (want - 1), mag = pow(10, floor(log10(raw))), f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    *step = nice * mag;
    *first = floor(lo / *step + 1e-9) * *step;
    int n = (int)ceil((hi - *first) / *step - 1e-9) + 1;
    return n < 2 ? 2 : n > 32 ? 32 : n;
}

static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < 1e-9 * step) v = 0;
    int k = (int)floor(log10(step) + 1e-9);
    if (fabs(v) < 1e6 && k >= -6) snprintf(buf, n, "%.*f", k < 0 ? -k : 0, v);
    else snprintf(buf, n, "%.3g", v);
}

typedef struct {
    double l, t, pw, ph; /* plot area */
    double x0, x1, y0, y1;
} frame;

static double X(const frame *fr, double v) { return fr->l + (v - fr->x0) / (fr->x1 - fr->x0) * fr->pw; }
static double Y(const frame *fr, double v) { return fr->t + fr->ph - (v - fr->y0) / (fr->y1 - fr->y0) * fr->ph; }

static void marker(FILE *f, int m, double x, double y, const char *color)
{
    if (m == DS_SVG_CROSS)
        fprintf(f, "<path d=\"M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f\" stroke=\"%s\" stroke-width=\"2.2\" fill=\"none\"/>",
                x - 5, y - 5, x + 5, y + 5, x - 5, y + 5, x + 5, y - 5, color);
    else if (m == DS_SVG_SQUARE)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"8\" fill=\"%s\"/>", x - 4, y - 4, color);
    else fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\"/>", x, y, color);
}

/* The data range of the series along y (with error bars) or x. */
static void range(int ns, const ds_svg_series *s, int along_x, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double v = along_x ? (s[k].x ? s[k].x[i] : i) : s[k].y[i];
            double e = !along_x && s[k].err && isfinite(s[k].err[i]) ? fabs(s[k].err[i]) : 0;
            if (!isfinite(v) || !isfinite(s[k].y[i])) continue;
            if (v - e < *lo) *lo = v - e;
            if (v + e > *hi) *hi = v + e;
        }
    if (*lo > *hi) *lo = 0, *hi = 1;
}

/* Axis ticks, grid lines and labels; widens [lo, hi] to the outer ticks. */
static void y_axis(FILE *f, frame *fr, double lo, double hi)
{
    double first, step;
    int n = ds_svg_ticks(lo, hi, 6, &first, &step);
    fr->y0 = fmin(first, lo), fr->y1 = fmax(first + (n - 1) * step, hi);
    if (fr->y1 <= fr->y0) fr->y1 = fr->y0 + step;
    for (int i = 0; i < n; i++) {
        double v = first + i * step, y = Y(fr, v);
        if (v < fr->y0 - 1e-9 * step || v > fr->y1 + 1e-9 * step) continue;
        char b[48];
        tick_label(b, sizeof b, v, step);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>", fr->l, y,
                fr->l + fr->pw, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%s</text>\n", fr->l - 6, y + 4, b);
    }
}

static void x_axis(FILE *f, frame *fr, const ds_svg_chart *c, double lo, double hi)
{
    const double base = fr->t + fr->ph;
    if (c->xcat) {
        fr->x0 = -0.5, fr->x1 = c->ncat - 0.5;
        const int every = c->ncat > 12 ? (c->ncat + 11) / 12 : 1;
        /* labels cut to the room of their slot (about 7 px a character); the tooltips have them whole */
        int room = (int)(fr->pw / (c->ncat > 0 ? c->ncat : 1) * every / 7.0);
        room = room < 4 ? 4 : room > 24 ? 24 : room;
        for (int i = 0; i < c->ncat; i += every) {
            char b[32];
            snprintf(b, sizeof b, "%s", c->xcat[i] ? c->xcat[i] : "");
            if ((int)strlen(b) > room) strcpy(b + room - 2, "..");
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", X(fr, i), base + 17);
            ds_xml_escape(f, b);
            fputs("</text>\n", f);
        }
        return;
    }
    double first, step;
    int n = ds_svg_ticks(lo, hi, 6, &first, &step);
    fr->x0 = fmin(first, lo), fr->x1 = fmax(first + (n - 1) * step, hi);
    if (fr->x1 <= fr->x0) fr->x1 = fr->x0 + step;
    for (int i = 0; i < n; i++) {
        double v = first + i * step;
        char b[48];
        tick_label(b, sizeof b, v, step);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", X(fr, v), base, X(fr, v), base + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n", X(fr, v), base + 18, b);
    }
}

static double legend_entry(FILE *f, double x, double y, int m, const char *color, int bar, int line, const char *label)
{
    if (bar) fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"10\" fill=\"%s\"/>", x, y - 9, color);
    else {
        if (line) fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>", x - 4, y - 4,
                          x + 16, y - 4, color);
        marker(f, m, x + 6, y - 4, color);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 20, y);
    ds_xml_escape(f, label);
    fputs("</text>", f);
    return x + 30 + 6.8 * (double)strlen(label ? label : "");
}

static void legend(FILE *f, const ds_svg_chart *c, int ns, const ds_svg_series *s, double x, double y)
{
    fputs("<g class=\"legend\">", f);
    for (int k = 0; k < ns; k++)
        x = legend_entry(f, x, y, s[k].key_marker, s[k].color, c->bars && k == 0,
                         s[k].line, s[k].name);
    for (int k = 0; k < c->nkeys; k++) x = legend_entry(f, x, y, c->keys[k].marker, c->keys[k].color, 0, 0, c->keys[k].label);
    fputs("</g>\n", f);
}

static void tip(FILE *f, const ds_svg_series *s, int i)
{
    if (!s->tip || !s->tip[i]) return;
    fputs("<title>", f);
    ds_xml_escape(f, s->tip[i]);
    fputs("</title>", f);
}

static void series(FILE *f, const frame *fr, const ds_svg_chart *c, int k, const ds_svg_series *s)
{
    fprintf(f, "<g class=\"series\" data-name=\"");
    ds_xml_escape(f, s->name);
    fprintf(f, "\" data-points=\"%d\">\n", s->n);
    const double bw = c->xcat ? fr->pw / (c->ncat > 0 ? c->ncat : 1) * 0.6 : 0;
    if (s->line) {
        int open = 0;
        for (int i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : i;
            if (!isfinite(x) || !isfinite(s->y[i])) { if (open) fputs("\"/>\n", f); open = 0; continue; }
            if (!open) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s->color);
            fprintf(f, "%s%.1f,%.1f", open ? " " : "", X(fr, x), Y(fr, s->y[i]));
            open = 1;
        }
        if (open) fputs("\"/>\n", f);
    }
    for (int i = 0; i < s->n; i++) {
        double x = s->x ? s->x[i] : i, y = s->y[i];
        if (!isfinite(x) || !isfinite(y)) continue;
        const char *col = s->point_color && s->point_color[i] ? s->point_color[i] : s->color;
        static const char *const mname[] = {"circle", "cross", "square"};
        const int m = s->marker ? s->marker[i] : DS_SVG_CIRCLE;
        fprintf(f, "<g class=\"point\" data-i=\"%d\" data-marker=\"%s\">", i, c->bars && k == 0 ? "bar" : mname[m]);
        tip(f, s, i);
        if (c->bars && k == 0) {
            double y0 = Y(fr, fmax(fr->y0, 0)), y1 = Y(fr, y);
            if (y0 - y1 < 3 && y1 - y0 < 3) y1 = y0 - 3;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", X(fr, x) - bw / 2, fmin(y0, y1), bw,
                    fmax(fabs(y0 - y1), 3), col); /* a zero still shows its color */
        } else {
            if (s->err && isfinite(s->err[i]) && s->err[i] > 0)
                fprintf(f, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8\" stroke=\"%s\" fill=\"none\"/>", X(fr, x),
                        Y(fr, y - s->err[i]), Y(fr, y + s->err[i]), X(fr, x) - 4, Y(fr, y - s->err[i]), X(fr, x) - 4,
                        Y(fr, y + s->err[i]), col);
            marker(f, m, X(fr, x), Y(fr, y), col);
        }
        fputs("</g>\n", f);
    }
    fputs("</g>\n", f);
}

void ds_svg_write(FILE *f, const ds_svg_chart *c, int ns, const ds_svg_series *s)
{
    const int w = c->width > 0 ? c->width : 560, h = c->height > 0 ? c->height : 300;
    frame fr = {.l = 72, .t = 52, .pw = w - 72 - 16, .ph = h - 52 - 50};
    fprintf(f, "<svg class=\"chart\" id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "role=\"img\" font-family=\"sans-serif\">\n<title>", c->id ? c->id : "chart", w, h, w, h);
    ds_xml_escape(f, c->title);
    fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", w, h);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"bold\">", 8);
    ds_xml_escape(f, c->title);
    fputs("</text>\n", f);
    legend(f, c, ns, s, fr.l, 38);
    double lo, hi;
    range(ns, s, 0, &lo, &hi);
    if (c->bars) lo = fmin(lo, 0), hi = fmax(hi, 0);
    else { double pad = (hi - lo) * 0.08; lo -= pad, hi += pad; }
    y_axis(f, &fr, lo, hi);
    range(ns, s, 1, &lo, &hi);
    if (!c->xcat) { double pad = (hi - lo) * 0.06; lo -= pad, hi += pad; }
    x_axis(f, &fr, c, lo, hi);
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" stroke=\"#444\" fill=\"none\"/>\n", fr.l, fr.t, fr.t + fr.ph, fr.l + fr.pw);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">", fr.l + fr.pw / 2, h - 8);
    ds_xml_escape(f, c->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">",
            fr.t + fr.ph / 2);
    ds_xml_escape(f, c->ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < ns; k++) series(f, &fr, c, k, &s[k]);
    fputs("</svg>\n", f);
}
