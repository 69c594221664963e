/* deltasoup scan: the anomaly report of many deltas of one base
 * (docs/scan.md). Orchestration only: the statistics are src/scan.c, the
 * pass over the files io/scan_stream.c (on aggregate's chunk stream,
 * io/agg_stream.h), the input checks io/delta_check.c and io/h5_delta.c.
 *
 * Flow: every rank opens the base and every delta collectively (errors
 * print once), checks each delta against the base (recorded base hash,
 * config, tensors and shapes) and against the first delta's layout ->
 * one pass over the tensors in chunks of rows: files read in contiguous
 * ranges per rank (each file's per-tensor digests verified as its rows
 * stream in), chunk j's statistics computed by rank j % size and added in
 * chunk order (the numbers do not depend on the number of ranks) -> the
 * robust z-scores and flags -> the table (rank 0) and --json OUT. */
#include "config.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/delta_check.h"
#include "io/h5_delta.h"
#include "io/h5_model.h"
#include "io/outfile.h"
#include "io/scan_stream.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "src/opts.h"

typedef struct {
    const char *base, *json;
    int f, f_set, overwrite, force, no_verify;
    double threshold, chunk_mb;
    ds_strlist in;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->base) return ds_err(DS_EXIT_USAGE, "--base B.h5 is required");
    if (o->in.n < 3)
        return ds_err(DS_EXIT_USAGE, "scan needs at least 3 deltas (a median, a MAD and Krum's neighbours), got %d",
                      o->in.n);
    if (o->f_set && o->in.n < 2 * o->f + 3)
        return ds_err(DS_EXIT_USAGE, "--byzantine %d needs at least %d deltas (2F + 3), got %d", o->f, 2 * o->f + 3,
                      o->in.n);
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "the base checkpoint every delta must have been made from"),
    DS_OPT_STRING(opts, json, "json", "OUT", "write the report as JSON to OUT (a \"deltas\" list; docs/scan.md)"),
    {.name = "byzantine", .type = DS_OPT_T_INT, .off = offsetof(opts, f), .meta = "F",
     .help = "Krum's score: the sum of the n - F - 2 smallest squared distances\n"
             "(default floor((n - 3) / 2), the most Krum tolerates; n >= 2F + 3)",
     .lo = 0, .hi = 1 << 20, .given = DS_OPT_GIVEN(opts, f_set)},
    DS_OPT_DOUBLE(opts, threshold, "threshold", "Z", 0, 1e9, "8",
                  "flag a delta whose robust z-score (median, 1.4826 MAD) passes Z:\n"
                  "|z| of log norm, -z of cosine and agreement, z of Krum's score\n"
                  "(docs/scan.md: honest fine-tunes reach z 6; 3.5 flags some of them)"),
    DS_OPT_DOUBLE(opts, chunk_mb, "chunk-mb", "N", 1.0 / 1024, 1 << 24, "256",
                  "MiB for one chunk of all deltas' rows (fractions ok)"),
    DS_OPT_FORCE(opts, force, "scan deltas made for another base (a warning instead of an error)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup scan --base B.h5 [--json OUT] [options] D1.bd.h5 D2.bd.h5 D3.bd.h5 ...",
    .about = "Anomaly report of n >= 3 deltas of one base (docs/scan.md): per delta its norm, its cosine\n"
             "to the coordinate-wise median of all deltas, its sign agreement with the majority, its Krum\n"
             "score, and a flag with the rules that raised it (robust z-scores with the median and the\n"
             "median absolute deviation; an input whose content hash another input shares: duplicate).",
    .opts = options,
    .epilog = "Rules (z = (x - median) / (1.4826 MAD) over the n deltas, T = --threshold):\n"
              "  norm_high, norm_low   z of log(norm) > T, < -T\n"
              "  cosine_low            z of the cosine to the median < -T\n"
              "  agreement_low         z of the sign agreement < -T\n"
              "  krum_high             z of Krum's score > T\n"
              "  duplicate             the same content_sha256 as another input\n"
              "exit: 0 ok (flagged deltas included), 2 usage, 3 bad input, 4 output exists or unwritable",
    .pos_off = offsetof(opts, in),
    .pos_min = 0,
    .pos_max = -1,
    .pos_name = "deltas",
    .check = check};

typedef struct {
    int n;
    const char **file;
    char **owner, **content;
    ds_delta_meta layout; /* the first delta's */
} inputs;

static void inputs_free(inputs *in)
{
    for (int k = 0; k < in->n; k++) free(in->owner[k]), free(in->content[k]);
    free(in->owner), free(in->content), free(in->layout.entries);
}

/* Collective: delta k against the base and the first delta; keep its identity. */
static int check_delta(const ds_ctx *ctx, const opts *o, ds_model_file *bf, inputs *in, int k)
{
    ds_delta_file *f;
    int rc = ds_delta_open(o->in.v[k], ctx->comm, &f);
    if (rc) return rc;
    const ds_delta_meta *m = ds_delta_get_meta(f);
    in->owner[k] = ds_strdup(m->owner);
    in->content[k] = ds_strdup(m->content_sha256);
    if (k == 0) {
        in->layout = *m;
        in->layout.entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(m->n + 1));
        memcpy(in->layout.entries, m->entries, sizeof(ds_delta_entry) * (size_t)m->n);
    }
    rc = ds_delta_check_fit(o->in.v[k], m, o->base, bf, o->force, ctx->rank);
    if (!rc && k > 0) rc = ds_delta_same_layout(o->in.v[0], &in->layout, o->in.v[k], m);
    if (!rc && !m->content_sha256[0]) rc = ds_err(DS_EXIT_INPUT, "%s: no content_sha256 (unfinished file?)", o->in.v[k]);
    ds_delta_close(f);
    return ds_ctx_agree(ctx, rc); /* every rank holds the same metadata: the same verdict */
}

/* Collective: the base and every delta, checked. */
static int open_inputs(const ds_ctx *ctx, const opts *o, inputs *in)
{
    in->n = o->in.n;
    in->file = (const char **)o->in.v;
    in->owner = ds_calloc((size_t)in->n, sizeof(char *));
    in->content = ds_calloc((size_t)in->n, sizeof(char *));
    ds_model_file *bf;
    int rc = ds_model_open(o->base, ctx->comm, &bf);
    if (rc) return rc;
    for (int k = 0; k < in->n && !rc; k++) rc = check_delta(ctx, o, bf, in, k);
    ds_model_close(bf);
    return rc;
}

static void print_table(const ds_ctx *ctx, const inputs *in, const ds_scan_delta *d, const ds_scan_summary *sum)
{
    if (ctx->rank != 0) return;
    printf("  %3s  %-20s %12s %10s %10s %14s  %-7s  %s\n", "#", "owner", "norm", "cos_med", "agreement", "krum_score",
           "flagged", "reasons");
    int flagged = 0;
    for (int u = 0; u < in->n; u++) {
        char why[160] = "";
        for (int r = 0; r < DS_SCAN_NRULES; r++)
            if (d[u].rules >> r & 1)
                snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", why[0] ? "," : "", ds_scan_rule_names[r]);
        flagged += d[u].rules != 0;
        printf("  %3d  %-20.20s %12.6g %10.6f %10.6f %14.6g  %-7s  %s\n", u, in->owner[u], d[u].stat[DS_SCAN_NORM],
               d[u].stat[DS_SCAN_COSINE], d[u].stat[DS_SCAN_AGREEMENT], d[u].stat[DS_SCAN_KRUM], d[u].rules ? "yes" : "no",
               why);
    }
    printf("median (1.4826 MAD): log norm %.6g (%.3g), cosine %.6g (%.3g), agreement %.6g (%.3g), krum %.6g (%.3g)\n",
           sum->median[0], sum->sigma[0], sum->median[1], sum->sigma[1], sum->median[2], sum->sigma[2], sum->median[3],
           sum->sigma[3]);
    printf("scan: %d of %d deltas flagged (|z| > %g; Krum: f = %zu, %zu neighbours)\n", flagged, in->n, sum->threshold,
           sum->f, sum->neighbours);
    fflush(stdout);
}

/* Collective: the pass, the statistics, the table and the JSON. */
static int scan(const ds_ctx *ctx, const opts *o, const inputs *in)
{
    ds_comm *comm = NULL;
    int rc = ds_comm_init(&comm, ctx, DS_COMM_MPI);
    ds_scan_delta *d = ds_calloc((size_t)in->n, sizeof(ds_scan_delta));
    ds_scan_summary sum;
    const size_t f = o->f_set ? (size_t)o->f : ds_scan_default_f((size_t)in->n);
    if (!rc)
        rc = ds_scan_files(ctx, comm, in->n, in->file, (const char *const *)in->content, &in->layout, o->chunk_mb, f,
                           o->threshold, d, &sum);
    ds_comm_free(comm);
    if (!rc) print_table(ctx, in, d, &sum);
    if (!rc && o->json) {
        json_t *rep = ds_scan_summary_json(in->n, &sum);
        json_object_set_new(rep, "base", json_string(o->base));
        json_object_set_new(rep, "deltas", ds_scan_deltas_json(in->n, in->file, (const char *const *)in->owner,
                                                               (const char *const *)in->content, d));
        if (!ds_verify_enabled()) json_object_set_new(rep, "verify", json_false()); /* --no-verify */
        rc = ds_out_write_json(ctx, o->json, rep, JSON_INDENT(2) | JSON_SORT_KEYS, 0);
        json_decref(rep);
    }
    free(d);
    return rc;
}

int ds_job_scan(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    const char **ins = ds_malloc(sizeof(char *) * (size_t)(o.in.n + 1));
    for (int k = 0; k < o.in.n; k++) ins[k] = o.in.v[k];
    ins[o.in.n] = o.base;
    rc = ds_ctx_agree(ctx, ds_out_check_paths((const char *const[]){o.json}, 1, ins, o.in.n + 1));
    free(ins);
    /* --json OUT: refused when it exists (exit 4); written whole at the end
     * (OUT.tmp renamed), nothing on failure */
    if (!rc && o.json) rc = ds_out_begin(ctx, o.json, o.overwrite);
    inputs in = {0};
    if (!rc) rc = open_inputs(ctx, &o, &in);
    if (!rc) rc = scan(ctx, &o, &in);
    inputs_free(&in);
    ds_opts_free(&cmd, &o);
    return rc;
}
