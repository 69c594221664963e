/* The input checks of compress and apply (io/delta_check.h). */
#include "io/delta_check.h"
#include <string.h>
#include "src/bitdelta.h"

int ds_delta_check_pair(const char *bp, const ds_model_meta *b, const char *fp, const ds_model_meta *f)
{
    int i = 0, j = 0;
    while (i < b->n_tensors || j < f->n_tensors) {
        int c = i >= b->n_tensors ? 1 : j >= f->n_tensors ? -1 : strcmp(b->tensors[i].name, f->tensors[j].name);
        if (c < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is missing (it is in %s)", fp, b->tensors[i].name, bp);
        if (c > 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is not in the base %s", fp, f->tensors[j].name, bp);
        const ds_tinfo *x = &b->tensors[i++], *y = &f->tensors[j++];
        char s1[96], s2[96];
        if (!ds_tinfo_same_shape(x, y))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s differs from %s's %s", fp, y->name,
                          ds_shape_str(y, s1, sizeof s1), bp, ds_shape_str(x, s2, sizeof s2));
        if (x->dtype != y->dtype)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype %s differs from %s's %s", fp, y->name,
                          ds_dtype_name(y->dtype), bp, ds_dtype_name(x->dtype));
    }
    return ds_delta_check_config(fp, &f->cfg, bp, &b->cfg);
}

int ds_delta_check_fit(const char *dp, const ds_delta_meta *dm, const char *bp, ds_model_file *bf, int force,
                       int rank)
{
    const ds_model_meta *bm = ds_model_get_meta(bf);
    int rc = ds_delta_check_base(dp, dm->base_sha256, bp, bm->content_sha256, force, rank);
    if (rc) return rc;
    if ((rc = ds_delta_check_config(dp, &dm->cfg, bp, &bm->cfg))) return rc;
    for (int k = 0; k < dm->n; k++) {
        const ds_tinfo *t = &dm->entries[k].t;
        int i = ds_model_find(bf, t->name);
        char s1[96], s2[96];
        if (i < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is not in the base %s", dp, t->name, bp);
        const ds_tinfo *b = &bm->tensors[i];
        if (!ds_tinfo_same_shape(b, t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s has %s", dp, t->name,
                          ds_shape_str(t, s1, sizeof s1), bp, ds_shape_str(b, s2, sizeof s2));
    }
    return 0;
}
