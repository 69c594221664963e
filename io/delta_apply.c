/* A delta file on weights already in memory: read a delta's entries and add
 * them to a model's weights (apply, generate, eval, fit-scales: --delta).
 * The math is src/bitdelta.h's; this layer reads the file. */
#include "config.h"
#include "io/delta_apply.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_model.h"
#include "kernels/cpu/bitpack.h"

int ds_delta_add_entry(ds_delta_file *d, int k, ds_dtype dt, void *w, ds_delta_apply_fn apply, void *dev)
{
    const ds_delta_entry *e = &ds_delta_get_meta(d)->entries[k];
    int rc;
    if (e->coded) {
        uint64_t *bits = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row));
        float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales);
        rc = ds_delta_read_signs(d, k, bits);
        if (!rc) rc = ds_delta_read_scales(d, k, sc);
        if (!rc && apply) rc = apply(dev, dt, w, e, bits, sc);
        else if (!rc)
            ds_bitpack_apply((ds_kdtype)dt, w, (ds_kdtype)dt, w, bits, (size_t)e->rows, (size_t)e->cols, e->mode, sc);
        free(bits);
        free(sc);
    } else {
        size_t n = (size_t)ds_tinfo_numel(&e->t);
        void *dd = ds_malloc(n * ds_dtype_size(e->t.dtype));
        rc = ds_delta_read_dense(d, k, e->t.dtype, dd);
        if (!rc) ds_delta_add_dense(dt, w, e->t.dtype, dd, n);
        free(dd);
    }
    return rc;
}

int ds_delta_apply_weights(ds_delta_file *d, int n, const ds_tinfo *tinfo, void *const *w)
{
    const ds_delta_meta *m = ds_delta_get_meta(d);
    const char *path = ds_delta_path(d);
    for (int k = 0; k < m->n; k++) {
        const ds_delta_entry *e = &m->entries[k];
        int i = 0;
        while (i < n && strcmp(tinfo[i].name, e->t.name) != 0) i++;
        char s1[96], s2[96];
        if (i == n) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: not in the model", path, e->t.name);
        if (!ds_tinfo_same_shape(&tinfo[i], &e->t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: delta shape %s, model shape %s", path, e->t.name,
                          ds_shape_str(&e->t, s1, sizeof s1), ds_shape_str(&tinfo[i], s2, sizeof s2));
        if (!w[i]) continue; /* held by another pipeline stage (src/model.h ds_llama_init_stage) */
        int rc = ds_delta_add_entry(d, k, tinfo[i].dtype, w[i], NULL, NULL);
        if (rc) return rc;
        int64_t bad = ds_find_nonfinite(tinfo[i].dtype, w[i], (size_t)ds_tinfo_numel(&tinfo[i]));
        if (bad >= 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: base + delta is not finite at element %lld (in %s)", path,
                          e->t.name, (long long)bad, ds_dtype_name(tinfo[i].dtype));
    }
    return 0;
}

int ds_delta_apply_to_model(const ds_ctx *ctx, const char *delta_path, const char *base_path, int force,
                               const ds_config *cfg, int n, const ds_tinfo *tinfo, void *const *w)
{
    /* The base's recorded content hash: its metadata only, no tensor is read. */
    ds_model_file *bf;
    int rc = ds_model_open(base_path, ctx->comm, &bf);
    if (rc) return rc;
    char base_sha[65];
    snprintf(base_sha, sizeof base_sha, "%s", ds_model_get_meta(bf)->content_sha256);
    ds_model_close(bf);
    ds_delta_file *d;
    if ((rc = ds_delta_open(delta_path, ctx->comm, &d))) return rc;
    const ds_delta_meta *m = ds_delta_get_meta(d);
    rc = ds_delta_check_base(delta_path, m->base_sha256, base_path, base_sha, force, ctx->rank);
    if (!rc) rc = ds_delta_check_config(delta_path, &m->cfg, base_path, cfg);
    if (!rc) rc = ds_delta_apply_weights(d, n, tinfo, w);
    ds_delta_close(d);
    return ds_ctx_agree(ctx, rc);
}

