/* The nightly report's HTML page (io/report.h): one file, inline CSS and
 * inline SVG, every string escaped (owners and reasons are user input),
 * every number written so that it reads back as the JSON's double. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/report.h"
#include "src/svg.h"

#define C_KEPT "#1f77b4"
#define C_BAD "#d62728"
#define C_BASE "#7f7f7f"

static void esc(FILE *f, const char *s) { ds_xml_escape(f, s ? s : ""); }

/* The shortest %g form that reads back as v (what the JSON holds). */
static void num_text(char *b, size_t n, double v)
{
    if (!isfinite(v)) { snprintf(b, n, "%s", isnan(v) ? "-" : v > 0 ? "inf" : "-inf"); return; }
    for (int p = 6; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        if (strtod(b, NULL) == v) return;
    }
}

static void td_num(FILE *f, const char *col, double v)
{
    char b[40];
    num_text(b, sizeof b, v);
    fprintf(f, "<td class=\"num\" data-col=\"%s\">%s</td>", col, b);
}

static void td_str(FILE *f, const char *col, const char *s)
{
    fprintf(f, "<td data-col=\"%s\">", col);
    esc(f, s && *s ? s : "-");
    fputs("</td>", f);
}

static double jnum(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

static const char *CSS =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1150px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;font-size:12px;margin:8px 0}"
    "th,td{border:1px solid #ccc;padding:3px 5px;text-align:left}th{background:#f2f2f2}"
    "td[data-col=data],td[data-col=reason],td[data-col=message]{word-break:break-all;max-width:220px}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".published{color:#1a7f37;font-weight:bold}.refused,.failed,.FAIL{color:#c62828;font-weight:bold}"
    ".na{color:#666;font-style:italic}svg.chart{border:1px solid #ddd;margin:6px 8px 6px 0}"
    "code{font-size:12px}";

static ds_report_inspect *inspect_of(const ds_report_night *n, const char *path, const char *content)
{
    for (int i = 0; i < n->ni; i++)
        if (!strcmp(n->ins[i].content, content ? content : "") || !strcmp(n->ins[i].path, path ? path : ""))
            return &n->ins[i];
    return NULL;
}

static int trusted(const ds_report_night *n)
{
    return json_object_get(json_object_get(n->agg, "params"), "trusted_keys") != NULL;
}

/* The signature column: what aggregate's trust filter said, or that it did not check. */
static const char *sig_status(const ds_report_night *n, const char *status, const char *reason)
{
    if (!trusted(n)) return "not checked";
    if (!strcmp(status, "dropped") && (strstr(reason, "sign") || strstr(reason, "key"))) return "REFUSED";
    return "verified (trusted key)";
}

static void eps_status(FILE *f, const ds_report_night *n, const ds_report_inspect *x, const char *reason)
{
    json_t *maxe = json_object_get(json_object_get(n->agg, "params"), "max_dp_epsilon");
    char b[64] = "not recorded", e[40];
    if (x && isfinite(x->eps)) num_text(e, sizeof e, x->eps), snprintf(b, sizeof b, "%s", e);
    else if (!x) snprintf(b, sizeof b, "unknown (not inspected)");
    if (maxe) {
        num_text(e, sizeof e, jnum(maxe));
        const int over = strstr(reason, "dp_epsilon") != NULL;
        snprintf(b + strlen(b), sizeof b - strlen(b), over ? " (over budget %s)" : " (within %s)", e);
    }
    td_str(f, "dp_epsilon", b);
}

static void contributor_row(FILE *f, const ds_report_night *n, json_t *c)
{
    const char *path = json_string_value(json_object_get(c, "path"));
    const char *hash = json_string_value(json_object_get(c, "content_sha256"));
    const char *status = json_string_value(json_object_get(c, "status"));
    const char *reason = json_string_value(json_object_get(c, "reason"));
    status = status ? status : "", reason = reason ? reason : "";
    const ds_report_inspect *x = inspect_of(n, path, hash);
    char shorth[17] = "";
    snprintf(shorth, sizeof shorth, "%s", hash ? hash : "");
    fprintf(f, "<tr data-index=\"%lld\">", (long long)json_integer_value(json_object_get(c, "index")));
    fputs("<td data-col=\"owner\" title=\"", f);
    esc(f, path);
    fputs("\">", f);
    esc(f, json_string_value(json_object_get(c, "owner")));
    fputs("</td>", f);
    fputs("<td data-col=\"content\"><code title=\"", f);
    esc(f, hash);
    fputs("\">", f);
    esc(f, shorth);
    fputs("</code></td>", f);
    td_str(f, "signature", sig_status(n, status, reason));
    eps_status(f, n, x, reason);
    td_num(f, "krum_score", jnum(json_object_get(c, "krum_score")));
    td_num(f, "norm", x ? x->norm : NAN);
    td_num(f, "weight", jnum(json_object_get(c, "weight")));
    td_num(f, "kept_fraction", jnum(json_object_get(c, "kept_fraction")));
    fprintf(f, "<td data-col=\"status\" class=\"%s\">%s</td>", strcmp(status, "used") ? "refused" : "published",
            !strcmp(status, "used") ? "kept" : !strcmp(status, "rejected") ? "rejected (weight 0)" : "dropped");
    td_str(f, "reason", reason);
    fputs("</tr>\n", f);
}

static void contributors(FILE *f, const ds_report_night *n)
{
    fputs("<h2>Contributors</h2>\n", f);
    json_t *arr = json_object_get(n->agg, "contributors"), *c;
    json_t *fr = json_object_get(n->night, "filter_rejected");
    if (!n->agg && !json_array_size(fr)) {
        fputs("<p class=\"na\">No aggregate report this night (it stopped before aggregating).</p>\n", f);
        return;
    }
    fputs("<table id=\"contributors\"><tr><th>owner</th><th>content</th><th>signature</th><th>dp epsilon</th>"
          "<th>Krum score</th><th>norm</th><th>weight</th><th>kept fraction</th><th>status</th><th>reason</th>"
          "</tr>\n", f);
    size_t i;
    json_array_foreach(arr, i, c) contributor_row(f, n, c);
    json_array_foreach(fr, i, c) {
        const char *p = json_string_value(json_object_get(c, "path")), *base = p ? strrchr(p, '/') : NULL;
        fputs("<tr data-filter=\"1\"><td data-col=\"owner\" title=\"", f);
        esc(f, p);
        fputs("\">(file ", f);
        esc(f, base ? base + 1 : p);
        fputs(")</td><td data-col=\"content\">-</td><td data-col=\"signature\">-</td><td data-col=\"dp_epsilon\">-</td>", f);
        fputs("<td class=\"num\" data-col=\"krum_score\">-</td><td class=\"num\" data-col=\"norm\">-</td>"
              "<td class=\"num\" data-col=\"weight\">-</td><td class=\"num\" data-col=\"kept_fraction\">-</td>"
              "<td data-col=\"status\" class=\"refused\">rejected before aggregating</td>", f);
        td_str(f, "reason", json_string_value(json_object_get(c, "reason")));
        fputs("</tr>\n", f);
    }
    fputs("</table>\n<p>Norm: the L2 norm of the delta's values, sqrt(&#8721; numel &#183; (mean&#178; + std&#178;)) over "
          "the tensors of <code>deltasoup inspect --json</code>; Krum score: aggregate's (krum and multi-krum only).</p>\n",
          f);
}

/* The weight bars and the score-vs-norm scatter of tonight's contributors. */
static void contributor_charts(FILE *f, const ds_report_night *n)
{
    json_t *arr = json_object_get(n->agg, "contributors"), *c;
    const int k = (int)json_array_size(arr);
    if (!k) return;
    const char **lab = ds_calloc((size_t)k, sizeof(char *)), **col = ds_calloc((size_t)k, sizeof(char *));
    const char **tip = ds_calloc((size_t)k, sizeof(char *));
    double *w = ds_calloc((size_t)k, sizeof(double)), *sx = ds_calloc((size_t)2 * k, sizeof(double));
    double *sy = ds_calloc((size_t)2 * k, sizeof(double));
    int *mk = ds_calloc((size_t)2 * k, sizeof(int)), nk = 0, nb = 0, has_score = 0, has_norm = 0;
    size_t i;
    json_array_foreach(arr, i, c) {
        const char *st = json_string_value(json_object_get(c, "status"));
        const ds_report_inspect *x = inspect_of(n, json_string_value(json_object_get(c, "path")),
                                                json_string_value(json_object_get(c, "content_sha256")));
        const int bad = !st || strcmp(st, "used") != 0;
        lab[i] = json_string_value(json_object_get(c, "owner"));
        tip[i] = lab[i];
        w[i] = jnum(json_object_get(c, "weight"));
        col[i] = bad ? C_BAD : C_KEPT;
        double s = jnum(json_object_get(c, "krum_score")), nm = x ? x->norm : NAN;
        has_score |= isfinite(s), has_norm |= isfinite(nm);
        int at = bad ? k + nb++ : nk++;
        sx[at] = nm, sy[at] = s, mk[at] = bad ? DS_SVG_CROSS : DS_SVG_CIRCLE;
    }
    fputs("<h2>Weights and anomaly scores</h2>\n", f);
    const ds_svg_key bk[] = {{DS_SVG_SQUARE, C_BAD, "rejected or dropped"}};
    ds_svg_series bars = {.name = "weight (kept)", .color = C_KEPT, .n = k, .y = w, .point_color = col, .tip = tip};
    ds_svg_chart bc = {.id = "weights", .title = "Weight of each contributor", .xlabel = "contributor (owner)",
                       .ylabel = "weight", .width = 560, .height = 320, .xcat = lab, .ncat = k, .bars = 1, .keys = bk,
                       .nkeys = 1};
    ds_svg_write(f, &bc, 1, &bars);
    if (has_score && has_norm) {
        ds_svg_series ss[2] = {{.name = "kept", .color = C_KEPT, .n = nk, .x = sx, .y = sy, .marker = mk},
                               {.name = "flagged (rejected or dropped)", .color = C_BAD, .n = nb, .x = sx + k, .y = sy + k,
                                .marker = mk + k, .key_marker = DS_SVG_CROSS}};
        ds_svg_chart sc = {.id = "scatter", .title = "Krum score vs norm", .xlabel = "norm of the delta (L2)",
                           .ylabel = "Krum score (lower: more central)", .width = 560, .height = 320};
        ds_svg_write(f, &sc, 2, ss);
    } else {
        const char *m = json_string_value(json_object_get(n->agg, "method"));
        fputs("<p class=\"na\" id=\"scatter-na\">No anomaly-score scatter tonight: ", f);
        if (!has_score) {
            fputs("the aggregate report has no anomaly (Krum) score for method ", f);
            esc(f, m);
            fputs(" (only krum and multi-krum compute one)", f);
        }
        if (!has_norm) fputs(has_score ? "no norms (the night has no inspect records)" : "; no norms (the night has no inspect records)", f);
        fputs(".</p>\n", f);
    }
    free(lab), free(col), free(tip), free(w), free(sx), free(sy), free(mk);
}

static void metrics(FILE *f, const ds_report_night *n)
{
    fputs("<h2>Evaluation: tonight's soup against the previous reference</h2>\n", f);
    if (!n->nm) {
        fputs("<p class=\"na\">No evaluation results this night.</p>\n", f);
        return;
    }
    char r[40], a[40], k[40];
    num_text(r, sizeof r, n->min_ratio), num_text(a, sizeof a, n->abs_slack), num_text(k, sizeof k, n->se_slack);
    fprintf(f, "<p>Gate rule: min ratio %s, absolute slack %s, se slack %s (deltasoup gate --help).", r, a, k);
    json_t *ge = json_object_get(n->night, "gate_exit");
    if (json_is_integer(ge)) fprintf(f, " Gate exit code: %lld (%s).", (long long)json_integer_value(ge),
                                     json_integer_value(ge) == 0 ? "passed" : "refused");
    fputs(" Baseline: ", f);
    esc(f, ds_report_str(n, "baseline_ref"));
    fputs("</p>\n<table id=\"metrics\"><tr><th>task</th><th>data</th><th>metric</th><th>better</th><th>reference</th>"
          "<th>reference se</th><th>soup</th><th>soup se</th><th>bound</th><th>verdict</th></tr>\n", f);
    for (int i = 0; i < n->nm; i++) {
        const ds_report_metric *m = &n->m[i];
        fputs("<tr>", f);
        td_str(f, "task", m->task), td_str(f, "data", m->data), td_str(f, "metric", m->metric);
        td_str(f, "better", m->better > 0 ? "higher" : m->better < 0 ? "lower" : "-");
        td_num(f, "base", m->base), td_num(f, "base_se", m->base_se);
        td_num(f, "cand", m->cand), td_num(f, "cand_se", m->cand_se), td_num(f, "bound", m->bound);
        fprintf(f, "<td data-col=\"verdict\" class=\"%s\">", strncmp(m->verdict, "FAIL", 4) ? "ok" : "FAIL");
        esc(f, m->verdict);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

typedef struct {
    const char *task, *data, *metric;
} mkey;

/* One line chart per metric over every night of the history. */
static void trends(FILE *f, const ds_report_history *all, int upto)
{
    const ds_report_history hv = {all->dir, upto, all->nights}, *h = &hv;
    fputs("<h2>Across nights</h2>\n", f);
    mkey *keys = NULL;
    int nk = 0;
    for (int j = 0; j < h->n; j++)
        for (int i = 0; i < h->nights[j].nm; i++) {
            const ds_report_metric *m = &h->nights[j].m[i];
            int seen = 0;
            for (int q = 0; q < nk && !seen; q++)
                seen = !strcmp(keys[q].task, m->task) && !strcmp(keys[q].data, m->data) && !strcmp(keys[q].metric, m->metric);
            if (seen) continue;
            keys = ds_realloc(keys, sizeof *keys * (size_t)(nk + 1));
            keys[nk++] = (mkey){m->task, m->data, m->metric};
        }
    const char **dates = ds_calloc((size_t)h->n, sizeof(char *)), **pc = ds_calloc((size_t)h->n, sizeof(char *));
    int *mk = ds_calloc((size_t)h->n, sizeof(int)), *mb = ds_calloc((size_t)h->n, sizeof(int));
    double *c = ds_calloc((size_t)h->n, sizeof(double)), *ce = ds_calloc((size_t)h->n, sizeof(double));
    double *b = ds_calloc((size_t)h->n, sizeof(double)), *be = ds_calloc((size_t)h->n, sizeof(double));
    for (int j = 0; j < h->n; j++) {
        const char *st = ds_report_str(&h->nights[j], "status");
        dates[j] = ds_report_str(&h->nights[j], "date");
        mk[j] = st && !strcmp(st, "published") ? DS_SVG_CIRCLE : DS_SVG_CROSS;
        pc[j] = mk[j] == DS_SVG_CIRCLE ? C_KEPT : C_BAD;
        mb[j] = DS_SVG_SQUARE;
    }
    if (!nk) fputs("<p class=\"na\">No night of the history has evaluation results.</p>\n", f);
    for (int q = 0; q < nk; q++) {
        for (int j = 0; j < h->n; j++) {
            c[j] = ce[j] = b[j] = be[j] = NAN;
            const ds_report_night *n = &h->nights[j];
            for (int i = 0; i < n->nm; i++)
                if (!strcmp(keys[q].task, n->m[i].task) && !strcmp(keys[q].data, n->m[i].data) &&
                    !strcmp(keys[q].metric, n->m[i].metric))
                    c[j] = n->m[i].cand, ce[j] = n->m[i].cand_se, b[j] = n->m[i].base, be[j] = n->m[i].base_se;
        }
        char id[32], title[256];
        snprintf(id, sizeof id, "trend-%d", q);
        snprintf(title, sizeof title, "%s on %s (%s)", keys[q].metric, keys[q].data, keys[q].task);
        ds_svg_series s[2] = {{.name = "soup", .color = C_KEPT, .line = 1, .n = h->n, .y = c, .err = ce, .marker = mk,
                               .point_color = pc},
                              {.name = "reference", .color = C_BASE, .line = 1, .n = h->n, .y = b, .err = be,
                               .marker = mb, .key_marker = DS_SVG_SQUARE}};
        const ds_svg_key keys2[] = {{DS_SVG_CIRCLE, C_KEPT, "published"}, {DS_SVG_CROSS, C_BAD, "refused/failed"}};
        ds_svg_chart ch = {.id = id, .title = title, .xlabel = "night", .ylabel = keys[q].metric, .width = 560,
                           .height = 300, .xcat = dates, .ncat = h->n, .keys = keys2, .nkeys = 2};
        ds_svg_write(f, &ch, 2, s);
    }
    free(keys), free(dates), free(pc), free(mk), free(mb), free(c), free(ce), free(b), free(be);
}

static void nights_table(FILE *f, const ds_report_history *all, int upto)
{
    const ds_report_history hv = {all->dir, upto, all->nights}, *h = &hv;
    fputs("<table id=\"nights\"><tr><th>night</th><th>status</th><th>step</th><th>reference</th><th>method</th>"
          "<th>collected</th><th>accepted</th><th>rejected</th><th>message</th></tr>\n", f);
    for (int j = 0; j < h->n; j++) {
        const ds_report_night *n = &h->nights[j];
        fputs("<tr>", f);
        td_str(f, "date", ds_report_str(n, "date"));
        fprintf(f, "<td data-col=\"status\" class=\"");
        esc(f, ds_report_str(n, "status"));
        fputs("\">", f);
        esc(f, ds_report_str(n, "status"));
        fputs("</td>", f);
        td_str(f, "step", ds_report_str(n, "step")), td_str(f, "reference", ds_report_str(n, "reference"));
        td_str(f, "method", ds_report_str(n, "method"));
        td_num(f, "collected", jnum(json_object_get(n->night, "collected")));
        td_num(f, "accepted", jnum(json_object_get(n->night, "accepted")));
        td_num(f, "rejected", jnum(json_object_get(n->night, "rejected")));
        td_str(f, "message", ds_report_str(n, "message"));
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void timings(FILE *f, const ds_report_night *n)
{
    fputs("<h2>Timings and memory</h2>\n", f);
    json_t *t = json_object_get(n->night, "timings"), *e;
    if (!json_array_size(t)) {
        fputs("<p class=\"na\">No timings recorded this night.</p>\n", f);
        return;
    }
    fputs("<table id=\"timings\"><tr><th>step</th><th>seconds</th><th>peak RSS per rank (kB)</th></tr>\n", f);
    size_t i;
    json_array_foreach(t, i, e) {
        fputs("<tr>", f);
        td_str(f, "step", json_string_value(json_object_get(e, "step")));
        td_num(f, "seconds", jnum(json_object_get(e, "seconds")));
        td_num(f, "peak_rss_kb", jnum(json_object_get(e, "peak_rss_kb")));
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    double pk = jnum(json_object_get(n->night, "peak_rss_kb"));
    char b[40];
    num_text(b, sizeof b, pk);
    if (isfinite(pk)) fprintf(f, "<p id=\"peak\">Peak memory (largest RSS of one rank, /usr/bin/time): <b>%s</b> kB (%.1f MB).</p>\n", b, pk / 1024);
    else fputs("<p class=\"na\" id=\"peak\">Peak memory not recorded (no /usr/bin/time on the node).</p>\n", f);
}

static void header(FILE *f, const ds_report_night *n)
{
    const char *st = ds_report_str(n, "status");
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Nightly soup ", f);
    esc(f, ds_report_str(n, "date"));
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>Nightly soup ", CSS);
    esc(f, ds_report_str(n, "date"));
    fputs("</h1>\n<p id=\"status\">Status: <span class=\"", f);
    esc(f, st);
    fputs("\">", f);
    esc(f, st);
    fputs("</span>", f);
    if (ds_report_str(n, "reference")) fputs(" &#8212; ", f), esc(f, ds_report_str(n, "reference"));
    if (ds_report_str(n, "message")) fputs(" &#8212; ", f), esc(f, ds_report_str(n, "message"));
    fputs("<br>Job ", f);
    esc(f, ds_report_str(n, "job"));
    fputs(", method ", f);
    esc(f, ds_report_str(n, "method"));
    if (n->agg) fputs(", soup content <code>", f), esc(f, json_string_value(json_object_get(n->agg, "content_sha256"))),
        fputs("</code>", f);
    fputs("</p>\n", f);
}

void ds_report_write_html(FILE *f, const ds_report_history *h, int tonight, const char *version)
{
    const ds_report_night *n = &h->nights[tonight];
    header(f, n);
    contributors(f, n);
    contributor_charts(f, n);
    metrics(f, n);
    trends(f, h, tonight + 1); /* the nights up to tonight */
    nights_table(f, h, tonight + 1);
    timings(f, n);
    fputs("<p class=\"na\">Written by deltasoup ", f);
    esc(f, version);
    fputs(" report from ", f);
    esc(f, h->dir);
    fputs(".</p>\n</body>\n</html>\n", f);
}
