/* deltasoup inspect, safetensors branch (jobs/inspect.def): every tensor's
 * stats and the content hash, computed exactly as for a checkpoint, so a
 * model's hash equals the hash of its safetensors export. */
#include "config.h"
#include "jobs/inspect.h"
#include <stdlib.h>
#include <string.h>
#include "io/safetensors.h"

static int st_read(void *arg, int i, void *buf)
{
    const ds_st_file *f = arg;
    const void *data;
    void *owned;
    ds_st_view(f, i, &data, &owned);
    memcpy(buf, data, ds_tinfo_bytes(&f->h.tensors[i].info));
    free(owned);
    ds_st_release(f, i);
    return 0;
}

int ds_inspect_safetensors(const ds_ctx *ctx, const char *path, int json)
{
    ds_st_file *f = NULL;
    int rc = ds_ctx_agree(ctx, ds_st_open(path, &f));
    if (rc) return rc;
    int n = f->h.n;
    ds_tinfo *t = ds_malloc(sizeof *t * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) t[i] = f->h.tensors[i].info;
    ds_tensor_stats *stats = ds_calloc((size_t)(n ? n : 1), sizeof *stats);
    ds_digest content;
    rc = ds_inspect_tensors(ctx, n, t, st_read, f, stats, &content);
    json_t *report = NULL;
    if (!rc) {
        report = json_object();
        json_object_set_new(report, "file", json_string(path));
        json_object_set_new(report, "format", json_string("safetensors"));
        json_object_set_new(report, "header_bytes", json_integer((json_int_t)f->h.data_start));
        json_t *meta = json_object();
        for (int i = 0; i < f->h.n_meta; i++) json_object_set_new(meta, f->h.meta_keys[i], json_string(f->h.meta_vals[i]));
        json_object_set_new(report, "metadata", meta);
        ds_inspect_add_tensors(report, n, stats);
        json_object_set_new(report, "content_sha256", ds_inspect_hash_json(NULL, &content));
    }
    free(stats);
    free(t);
    ds_st_close(f);
    return rc ? rc : ds_inspect_report(ctx, path, report, json);
}
