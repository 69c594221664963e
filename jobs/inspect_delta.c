/* inspect's delta branch: a BitDelta file's attributes, per tensor its
 * coding, scale(s), the min/max/mean/std of the delta values it stands
 * for, bits per weight and ratio, the total ratio, and the content hash
 * recomputed from the data (jobs/inspect.h). */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_delta.h"
#include "jobs/inspect.h"
#include "src/bitdelta.h"
#include "src/shard.h"

/* The stored parts of the delta, in the order of the entries. */
typedef struct {
    ds_delta_file *d;
    int *entry; /* part -> entry */
    char *kind; /* 's'igns, s'c'ale, 'd'ense */
} delta_reader;

static int delta_read(void *arg, int i, void *buf)
{
    delta_reader *r = arg;
    int k = r->entry[i];
    if (r->kind[i] == 's') return ds_delta_read_signs(r->d, k, buf);
    if (r->kind[i] == 'c') return ds_delta_read_scales(r->d, k, buf);
    return ds_delta_read_dense(r->d, k, ds_delta_get_meta(r->d)->entries[k].t.dtype, buf);
}

static json_t *num_or_null(int have, double v) { return have && isfinite(v) ? json_real(v) : json_null(); }

/* Collective: the value statistics of every coded entry (out[4 k ...]),
 * each computed by one rank (entries sharded by size) and shared with a sum
 * over ranks, the other ranks adding zeros. */
static int coded_stats_all(const ds_ctx *ctx, ds_delta_file *d, double *out)
{
    const ds_delta_meta *m = ds_delta_get_meta(d);
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(m->n + 1));
    int *owner = ds_malloc(sizeof(int) * (size_t)(m->n + 1));
    for (int k = 0; k < m->n; k++) sizes[k] = m->entries[k].coded ? m->entries[k].rows * m->entries[k].words_per_row : 0;
    ds_shard_by_size(m->n, sizes, ctx->size, owner);
    double *mine = ds_calloc((size_t)(4 * m->n + 1), sizeof(double));
    int rc = 0;
    for (int k = 0; k < m->n && !rc; k++) {
        const ds_delta_entry *e = &m->entries[k];
        if (!e->coded || owner[k] != ctx->rank) continue;
        uint64_t *bits = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
        float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales + 1);
        rc = ds_delta_read_signs(d, k, bits);
        if (!rc) rc = ds_delta_read_scales(d, k, sc);
        if (!rc) ds_delta_value_stats(e, bits, sc, mine + 4 * k);
        free(bits);
        free(sc);
    }
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) MPI_Allreduce(mine, out, 4 * m->n, MPI_DOUBLE, MPI_SUM, ctx->comm);
    free(mine);
    free(sizes);
    free(owner);
    return rc;
}

/* One row of the tensor table; sc: the stats of the entry's scale part;
 * v: min, max, mean, std of the delta values the entry stands for. */
static json_t *tensor_json(const ds_delta_entry *e, const ds_tensor_stats *sc, const double v[4])
{
    json_t *shape = json_array();
    for (int d = 0; d < e->t.ndim; d++) json_array_append_new(shape, json_integer(e->t.shape[d]));
    uint64_t stored = ds_delta_entry_bytes(e, NULL);
    int per_tensor = e->coded && e->mode == DS_SCALE_TENSOR, spread = e->coded && !per_tensor;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(e->t.name));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "dtype", json_string(ds_dtype_name(e->t.dtype)));
    json_object_set_new(o, "coding", json_string(e->coded ? "bits" : "dense"));
    json_object_set_new(o, "scale_mode", e->coded ? json_string(ds_scale_kind_name(e->mode)) : json_null());
    json_object_set_new(o, "scale", num_or_null(per_tensor, sc ? sc->mean : NAN));
    json_object_set_new(o, "scale_min", num_or_null(spread, sc ? sc->min : NAN));
    json_object_set_new(o, "scale_mean", num_or_null(spread, sc ? sc->mean : NAN));
    json_object_set_new(o, "scale_max", num_or_null(spread, sc ? sc->max : NAN));
    json_object_set_new(o, "min", num_or_null(1, v[0]));
    json_object_set_new(o, "max", num_or_null(1, v[1]));
    json_object_set_new(o, "mean", num_or_null(1, v[2]));
    json_object_set_new(o, "std", num_or_null(1, v[3]));
    json_object_set_new(o, "bits", json_real(8.0 * (double)stored / (double)ds_tinfo_numel(&e->t)));
    json_object_set_new(o, "bytes", json_integer((json_int_t)stored));
    json_object_set_new(o, "ratio", json_real((double)ds_tinfo_bytes(&e->t) / (double)stored));
    return o;
}

/* Every stored part of the delta as an entry of its own (signs and scale
 * of a coded entry, dense of another), for ds_inspect_tensors. */
typedef struct {
    int np;
    ds_tinfo *parts;
    delta_reader rd;
    int *scale_part, *dense_part; /* entry -> its part, or -1 */
} delta_parts;

static void parts_plan(ds_delta_file *d, delta_parts *p)
{
    const ds_delta_meta *m = ds_delta_get_meta(d);
    size_t cap = (size_t)(2 * m->n + 1);
    p->np = 0;
    p->parts = ds_calloc(cap, sizeof *p->parts);
    p->rd = (delta_reader){d, ds_calloc(cap, sizeof(int)), ds_calloc(cap, 1)};
    p->scale_part = ds_malloc(sizeof(int) * (size_t)(m->n + 1));
    p->dense_part = ds_malloc(sizeof(int) * (size_t)(m->n + 1));
    for (int k = 0; k < m->n; k++) {
        const ds_delta_entry *e = &m->entries[k];
        p->scale_part[k] = p->dense_part[k] = -1;
        if (e->coded) {
            ds_delta_entry_info(e, "signs", &p->parts[p->np]);
            p->rd.entry[p->np] = k;
            p->rd.kind[p->np++] = 's';
            ds_delta_entry_info(e, "scale", &p->parts[p->np]);
            p->scale_part[k] = p->np;
            p->rd.entry[p->np] = k;
            p->rd.kind[p->np++] = 'c';
        } else {
            ds_delta_entry_info(e, "dense", &p->parts[p->np]);
            p->dense_part[k] = p->np;
            p->rd.entry[p->np] = k;
            p->rd.kind[p->np++] = 'd';
        }
    }
}

static void parts_free(delta_parts *p)
{
    free(p->parts);
    free(p->rd.entry);
    free(p->rd.kind);
    free(p->scale_part);
    free(p->dense_part);
}

/* The report (new reference); vals: the coded entries' value stats (4 per
 * entry), completed here with the dense entries'. */
static json_t *delta_report(const char *path, const ds_delta_meta *m, const delta_parts *p,
                            const ds_tensor_stats *stats, double *vals, const ds_digest *content)
{
    ds_delta_sizes s;
    double ratio = ds_delta_ratio(m->n, m->entries, &s);
    int coded = 0;
    json_t *arr = json_array();
    for (int k = 0; k < m->n; k++) {
        coded += m->entries[k].coded;
        const ds_tensor_stats *dense = p->dense_part[k] >= 0 ? &stats[p->dense_part[k]] : NULL;
        if (dense) vals[4 * k] = dense->min, vals[4 * k + 1] = dense->max, vals[4 * k + 2] = dense->mean,
                   vals[4 * k + 3] = dense->std;
        json_array_append_new(arr, tensor_json(&m->entries[k], p->scale_part[k] >= 0 ? &stats[p->scale_part[k]] : NULL,
                                               vals + 4 * k));
    }
    json_t *report = json_object();
    json_object_set_new(report, "file", json_string(path));
    json_object_set_new(report, "format", json_string(DS_DELTA_FORMAT));
    json_object_set_new(report, "format_version", json_integer(m->format_version));
    json_object_set_new(report, "base_sha256", json_string(m->base_sha256));
    json_object_set_new(report, "owner", json_string(m->owner));
    json_object_set_new(report, "scale_fit", json_string(m->scale_fit));
    json_object_set_new(report, "dp", m->has_dp ? json_pack("{s:f, s:f}", "epsilon", m->dp_epsilon, "delta", m->dp_delta)
                                                : json_null());
    json_object_set_new(report, "config", ds_inspect_config_json(&m->cfg));
    json_object_set_new(report, "n_tensors", json_integer(m->n));
    json_object_set_new(report, "n_coded", json_integer(coded));
    json_object_set_new(report, "tensors", arr);
    json_object_set_new(report, "compression",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "bytes_full", (json_int_t)s.full, "bytes_signs",
                                  (json_int_t)s.signs, "bytes_scales", (json_int_t)s.scales, "bytes_dense",
                                  (json_int_t)s.dense, "bytes_stored", (json_int_t)(s.signs + s.scales + s.dense),
                                  "ratio", ratio));
    json_object_set_new(report, "content_sha256", ds_inspect_hash_json(m->content_sha256, content));
    return report;
}

int ds_inspect_delta(const ds_ctx *ctx, const char *path, int json)
{
    ds_delta_file *d;
    int rc = ds_delta_open(path, ctx->comm, &d);
    if (rc) return rc;
    const ds_delta_meta *m = ds_delta_get_meta(d);
    delta_parts p;
    parts_plan(d, &p);
    ds_tensor_stats *stats = ds_calloc((size_t)p.np + 1, sizeof *stats);
    ds_digest content;
    rc = ds_inspect_tensors(ctx, p.np, p.parts, delta_read, &p.rd, stats, &content);
    double *vals = ds_calloc((size_t)(4 * m->n + 1), sizeof(double));
    if (!rc) rc = coded_stats_all(ctx, d, vals);
    json_t *report = rc ? NULL : delta_report(path, m, &p, stats, vals, &content);
    free(stats);
    free(vals);
    parts_free(&p);
    ds_delta_close(d);
    return rc ? rc : ds_inspect_report(ctx, path, report, json);
}
