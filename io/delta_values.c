/* A delta file's entry as float32 values (io/delta_values.h). */
#include "io/delta_values.h"
#include <stdlib.h>

int ds_delta_rows_values(ds_delta_rows *r, const char *path, const ds_delta_entry *e, float *v)
{
    if (!e->coded) {
        const size_t numel = (size_t)ds_tinfo_numel(&e->t);
        int rc = ds_delta_rows_dense(r, e, 0, ds_delta_nrows(e), DS_DTYPE_F32, v);
        int64_t bad = rc ? -1 : ds_find_nonfinite(DS_DTYPE_F32, v, numel);
        if (bad >= 0) rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: element %lld is not finite", path, e->t.name, (long long)bad);
        return rc;
    }
    uint64_t *bits = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
    float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales);
    int rc = ds_delta_rows_signs(r, e, 0, e->rows, bits);
    if (!rc) rc = ds_delta_rows_scales(r, e, 0, e->n_scales, sc);
    int64_t bad = rc ? -1 : ds_find_nonfinite(DS_DTYPE_F32, sc, (size_t)e->n_scales);
    if (bad >= 0) rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: scale %lld is not finite", path, e->t.name, (long long)bad);
    if (!rc) ds_bitpack_expand(v, bits, (size_t)e->rows, (size_t)e->cols, e->mode, sc);
    free(bits);
    free(sc);
    return rc;
}
