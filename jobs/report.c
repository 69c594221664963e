/* deltasoup report: the nightly soup as one self-contained HTML page
 * (io/report.h, docs/report.md) from a history folder the nightly script
 * writes: tonight's contributors, weights and anomaly scores, the soup's
 * metrics against the previous reference with the gate's verdict per
 * metric, every metric across the nights, timings and peak memory. Rank 0
 * reads and writes; the page is staged as NAME.tmp and renamed. */
#include "config.h"
#include <math.h>
#include <string.h>
#include "eval/gate.h"
#include "io/outfile.h"
#include "io/report.h"
#include "src/jobs.h"
#include "src/opts.h"

typedef struct {
    const char *history, *out, *night;
    int overwrite;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->history) return ds_err(DS_EXIT_USAGE, "--history DIR is required");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o REPORT.html is required");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, history, "history", "DIR",
                  "the nights: one subfolder per night with night.json (the nightly\n"
                  "soup script's DS_PUBLISH/history; docs/report.md)"),
    DS_OPT_OUTPUT(opts, out, "REPORT.html", "the page to write"),
    DS_OPT_STRING(opts, night, "night", "NAME",
                  "the night the page is about (its folder name or date);\n"
                  "default: the last one (folders sorted by name)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_QUIET_AS("print nothing on success"),
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup report --history DIR -o REPORT.html [--night NAME] [--overwrite] [--quiet]",
    .about = "Write the nightly soup's report: one HTML file with inline CSS and SVG charts (no script,\n"
             "nothing fetched): tonight's contributors (owner, content hash, signature and dp epsilon\n"
             "status, Krum score, norm, weight, kept or rejected and why), a bar chart of the weights, a\n"
             "scatter of Krum score vs norm, the soup's metrics against the previous reference with the\n"
             "gate's verdict per metric, a line chart of each metric across the nights (published and\n"
             "refused nights marked differently), the timings per step and the peak memory.",
    .opts = options,
    .epilog = "Exit codes: 0 written, 2 usage, 3 a missing or bad file in DIR (named), 4 the output exists\n"
              "(without --overwrite) or cannot be written.",
    .check = check};

/* The gate's verdict per metric, by the rule the night recorded (eval/gate.h). */
static void verdicts(ds_report_night *n)
{
    const ds_gate_rule rule = {n->min_ratio, n->abs_slack, n->se_slack};
    for (int i = 0; i < n->nm; i++) {
        ds_report_metric *m = &n->m[i];
        const ds_better dir = ds_gate_direction(m->metric);
        m->better = dir == DS_BETTER_HIGHER ? 1 : dir == DS_BETTER_LOWER ? -1 : 0;
        const char *v = "not gated";
        if (dir != DS_BETTER_NONE && !m->in_base) v = "not gated (no reference value)";
        else if (dir != DS_BETTER_NONE && !m->in_cand) v = "FAIL (missing in soup)";
        else if (dir != DS_BETTER_NONE)
            v = ds_gate_pass(dir, m->base, m->cand, m->base_se, m->cand_se, &rule, &m->bound) ? "pass" : "FAIL";
        snprintf(m->verdict, sizeof m->verdict, "%s", v);
    }
}

static int pick(const ds_report_history *h, const char *want)
{
    if (!want) return h->n - 1;
    for (int k = 0; k < h->n; k++) {
        const char *d = ds_report_str(&h->nights[k], "date"), *slash = strrchr(h->nights[k].dir, '/');
        if ((d && !strcmp(d, want)) || (slash && !strcmp(slash + 1, want))) return k;
    }
    return -1;
}

int ds_job_report(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    const char *outs[1] = {o.out}, *ins[1] = {o.history};
    rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 1, ins, 1));
    ds_report_history h = {0};
    int k = -1;
    if (!rc && ctx->rank == 0) {
        rc = ds_report_load(o.history, &h);
        if (!rc && (k = pick(&h, o.night)) < 0) rc = ds_err(DS_EXIT_USAGE, "--night %s: no such night in %s", o.night, o.history);
        for (int j = 0; !rc && j < h.n; j++) verdicts(&h.nights[j]);
    }
    rc = ds_ctx_agree(ctx, rc);
    ds_outfile out = {0};
    if (!rc) rc = ds_outfile_open(ctx, &out, o.out, o.overwrite);
    if (!rc && ctx->rank == 0) ds_report_write_html(out.f, &h, k, PACKAGE_VERSION);
    rc = ds_outfile_close(ctx, &out, rc);
    if (!rc && !ctx->quiet && ctx->rank == 0)
        ds_printf0(ctx, "wrote %s: night %s of %d in %s\n", o.out, ds_report_str(&h.nights[k], "date"), h.n, o.history);
    ds_report_free(&h);
    return rc;
}
