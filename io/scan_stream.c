/* The anomaly report's pass over delta files (io/scan_stream.h). */
#include "config.h"
#include "io/scan_stream.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows of e per chunk: the stream's (chunk_mb for all deltas' rows), and at
 * most chunk_mb of float32 medians (one per coordinate: for fewer than 32
 * deltas the median of a 1-bit chunk is larger than its bits). From the
 * budget, the shape and n only, as the stream's. */
static int64_t scan_rows(const ds_agg_stream *s, const ds_delta_entry *e)
{
    const int64_t R = ds_agg_stream_rows(s, e);
    const int64_t per = (int64_t)(e->coded ? e->cols : ds_delta_row_elems(&e->t)) * 4;
    const int64_t cap = per > 0 && (int64_t)s->budget / per > 1 ? (int64_t)s->budget / per : 1;
    return R < cap ? R : cap;
}

/* The largest chunk of the pass: coordinates and packed words. */
static void chunk_caps(const ds_agg_stream *s, const ds_delta_meta *layout, size_t *coords, size_t *words)
{
    *coords = *words = 0;
    for (int i = 0; i < layout->n; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const size_t R = (size_t)scan_rows(s, e);
        const size_t c = R * (size_t)(e->coded ? e->cols : ds_delta_row_elems(&e->t));
        const size_t w = e->coded ? R * (size_t)e->words_per_row : 0;
        if (c > *coords) *coords = c;
        if (w > *words) *words = w;
    }
}

/* One chunk's sums into u (rows [r0, r0 + nr) of e, gathered in s). */
static void chunk_sums(const ds_agg_stream *s, const ds_delta_entry *e, int64_t nr, ds_scan_sums *u, ds_scan_work *w)
{
    const size_t n = (size_t)s->np;
    if (e->coded) {
        ds_agg_bits c = {n, (size_t)nr, (size_t)e->cols, e->mode, s->bits, s->scale};
        ds_scan_chunk_bits(&c, u, w);
    } else {
        ds_scan_chunk_dense(n, s->dense, (size_t)nr * (size_t)ds_delta_row_elems(&e->t), u, w);
    }
}

int ds_scan_stream(ds_agg_stream *s, const ds_delta_meta *layout, ds_scan_sums *sums)
{
    const ds_ctx *ctx = s->ctx;
    size_t coords, words;
    chunk_caps(s, layout, &coords, &words);
    ds_scan_work w;
    ds_scan_work_init(&w, (size_t)s->np, coords, words);
    ds_scan_sums unit;
    ds_scan_sums_init(&unit, (size_t)s->np);
    ds_scan_sums_zero(sums);
    ds_progress pr;
    ds_progress_init(&pr, ctx, "scan", layout->n);
    int rc = 0;
    int64_t j = 0; /* the pass's chunk counter: chunk j is computed by rank j % size */
    for (int i = 0; i < layout->n && !rc; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const int64_t nrows = ds_delta_nrows(e), R = scan_rows(s, e);
        for (int64_t r0 = 0; r0 < nrows && !rc; r0 += R, j++) {
            const int64_t nr = nrows - r0 < R ? nrows - r0 : R;
            int local;
            if (ds_agg_stream_chunk(s, e, r0, nr, &local)) {
                rc = ds_ctx_agree(ctx, local);
                break;
            }
            ds_scan_sums_zero(&unit);
            if (j % ctx->size == ctx->rank) chunk_sums(s, e, nr, &unit, &w);
            /* every entry is non-zero on one rank at most: the sum is exact */
            ds_comm_allreduce_sum_f64(s->comm, unit.buf, unit.buf, ds_scan_sums_len(unit.n));
            ds_scan_sums_add(sums, &unit);
        }
        if (!rc && ((i + 1) % 8 == 0 || i + 1 == layout->n)) ds_progress_step(&pr, i + 1, "%s", e->t.name);
    }
    if (!rc) rc = ds_ctx_agree(ctx, ds_agg_stream_settle(s)); /* the last chunk's digests */
    ds_scan_sums_free(&unit);
    ds_scan_work_free(&w);
    return rc;
}

void ds_scan_mark_duplicates(int n, const char *const *content, ds_scan_delta *d)
{
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            if (a != b && content[a][0] && strcmp(content[a], content[b]) == 0) d[a].rules |= 1u << DS_SCAN_DUPLICATE;
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *ds_scan_deltas_json(int n, const char *const *file, const char *const *owner, const char *const *content,
                            const ds_scan_delta *d)
{
    json_t *arr = json_array();
    for (int u = 0; u < n; u++) {
        json_t *o = json_object(), *z = json_object(), *why = json_array();
        json_object_set_new(o, "file", json_string(file[u]));
        json_object_set_new(o, "owner", json_string(owner[u]));
        json_object_set_new(o, "content_sha256", json_string(content[u]));
        for (int k = 0; k < DS_SCAN_NSTATS; k++) {
            json_object_set_new(o, ds_scan_stat_names[k], real_or_null(d[u].stat[k]));
            json_object_set_new(z, ds_scan_stat_names[k], real_or_null(d[u].z[k]));
        }
        json_object_set_new(o, "z", z);
        for (int r = 0; r < DS_SCAN_NRULES; r++)
            if (d[u].rules >> r & 1) json_array_append_new(why, json_string(ds_scan_rule_names[r]));
        json_object_set_new(o, "flagged", json_boolean(d[u].rules != 0));
        json_object_set_new(o, "reasons", why);
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *ds_scan_summary_json(int n, const ds_scan_summary *sum)
{
    json_t *med = json_object(), *sg = json_object();
    for (int k = 0; k < DS_SCAN_NSTATS; k++) {
        const char *name = k == DS_SCAN_NORM ? "log_norm" : ds_scan_stat_names[k];
        json_object_set_new(med, name, real_or_null(sum->median[k]));
        json_object_set_new(sg, name, real_or_null(sum->sigma[k]));
    }
    return json_pack("{s:i, s:I, s:I, s:f, s:o, s:o}", "n", n, "byzantine", (json_int_t)sum->f, "krum_neighbours",
                     (json_int_t)sum->neighbours, "threshold", sum->threshold, "median", med, "sigma", sg);
}

/* Collective: owner[k] and content[k] of the n files (each string
 * allocated; the caller frees them). */
static int read_identities(const ds_ctx *ctx, int n, const char *const *file, char **owner, char **content)
{
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        ds_delta_file *f;
        if ((rc = ds_delta_open(file[k], ctx->comm, &f))) break;
        owner[k] = ds_strdup(ds_delta_get_meta(f)->owner);
        content[k] = ds_strdup(ds_delta_get_meta(f)->content_sha256);
        ds_delta_close(f);
    }
    return rc;
}

int ds_scan_files(const ds_ctx *ctx, ds_comm *comm, int n, const char *const *file, const char *const *content,
                  const ds_delta_meta *layout, double chunk_mb, size_t f, double threshold, ds_scan_delta *d,
                  ds_scan_summary *sum)
{
    ds_agg_stream s;
    int rc = ds_agg_stream_init(&s, ctx, comm, n, file, layout, chunk_mb);
    ds_scan_sums sums;
    ds_scan_sums_init(&sums, (size_t)n);
    if (!rc) rc = ds_scan_stream(&s, layout, &sums);
    ds_agg_stream_free(&s);
    if (!rc) {
        ds_scan_finish(&sums, f, threshold, d, sum);
        ds_scan_mark_duplicates(n, content, d);
    }
    ds_scan_sums_free(&sums);
    return rc;
}

int ds_scan_report(const ds_ctx *ctx, ds_comm *comm, int n, const char *const *file, const ds_delta_meta *layout,
                   double chunk_mb, json_t **deltas)
{
    *deltas = NULL;
    if (n < 3) return ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "the anomaly scan needs at least 3 deltas, got %d", n));
    char **owner = ds_calloc((size_t)n, sizeof(char *)), **content = ds_calloc((size_t)n, sizeof(char *));
    int rc = read_identities(ctx, n, file, owner, content);
    ds_scan_delta *d = ds_calloc((size_t)n, sizeof(ds_scan_delta));
    ds_scan_summary sum;
    if (!rc)
        rc = ds_scan_files(ctx, comm, n, file, (const char *const *)content, layout, chunk_mb,
                           ds_scan_default_f((size_t)n), DS_SCAN_THRESHOLD, d, &sum);
    if (!rc) *deltas = ds_scan_deltas_json(n, file, (const char *const *)owner, (const char *const *)content, d);
    free(d);
    for (int k = 0; k < n; k++) free(owner[k]), free(content[k]);
    free(owner), free(content);
    return rc;
}
