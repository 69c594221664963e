/* A delta file in a scale fit (io/delta_fit.h). */
#include "config.h"
#include "io/delta_fit.h"
#include <stdlib.h>
#include <string.h>
#include "io/delta_apply.h"
#include "io/h5.h"
#include "io/h5_delta_rows.h"

int ds_delta_read_for_fit(ds_delta_file *d, const char *base_path, ds_llama *student, ds_delta_coded *out)
{
    const ds_delta_meta *dm = ds_delta_get_meta(d);
    const char *path = ds_delta_path(d);
    const size_t cap = (size_t)(dm->n ? dm->n : 1);
    int rc = 0;
    memset(out, 0, sizeof *out);
    out->bits = ds_calloc(cap, sizeof *out->bits);
    out->scales = ds_calloc(cap, sizeof *out->scales);
    out->c = ds_calloc(cap, sizeof *out->c);
    for (int k = 0; k < dm->n && !rc; k++) {
        const ds_delta_entry *e = &dm->entries[k];
        const int i = ds_llama_find(student, e->t.name);
        char s1[96], s2[96];
        if (i < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is not in the base %s", path, e->t.name, base_path);
        const ds_tinfo *t = &student->tinfo[i];
        if (!ds_tinfo_same_shape(t, &e->t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s has %s", path, e->t.name,
                          ds_shape_str(&e->t, s1, sizeof s1), base_path, ds_shape_str(t, s2, sizeof s2));
        const int held = ds_llama_holds(student, i); /* a pipeline stage holds some tensors */
        if (!e->coded) { /* the student is base + dense deltas */
            if (held) rc = ds_delta_add_entry(d, k, DS_DTYPE_F32, student->w[i], NULL, NULL);
            continue;
        }
        const int c = out->n++;
        out->scales[c] = ds_malloc(sizeof(float) * (size_t)e->n_scales);
        if (held) {
            out->bits[c] = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
            rc = ds_delta_read_signs(d, k, out->bits[c]);
        }
        if (!rc) rc = ds_delta_read_scales(d, k, out->scales[c]);
        int64_t bad = rc ? -1 : ds_find_nonfinite(DS_DTYPE_F32, out->scales[c], (size_t)e->n_scales);
        if (bad >= 0) rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: scale %lld is not finite", path, e->t.name, (long long)bad);
        out->c[c] = (ds_fit_coded){i, e->mode, out->bits[c], out->scales[c]};
    }
    if (!rc && out->n == 0) rc = ds_err(DS_EXIT_INPUT, "%s: no 1-bit coded tensor, nothing to fit", path);
    return rc;
}

void ds_delta_coded_free(ds_delta_coded *c)
{
    for (int k = 0; k < c->n; k++) {
        free(c->bits[k]);
        free(c->scales[k]);
    }
    free(c->bits);
    free(c->scales);
    free(c->c);
    memset(c, 0, sizeof *c);
}

int ds_delta_write_fit_record(const char *path, const ds_delta_fit_record *r)
{
    hid_t file;
    int rc = ds_h5_open_rw_serial(path, &file);
    if (rc) return rc;
    rc = ds_h5_attr_set_int(file, "scale_fit_steps", r->steps);
    if (!rc) rc = ds_h5_attr_set_double(file, "scale_fit_lr", r->lr);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_batch", r->batch);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_seq_len", r->seq_len);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_samples", r->samples);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_seed", r->seed);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_calib_sha256", r->calib_sha256);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_from", r->from);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_input_sha256", r->input_sha256);
    if (!rc && r->has_objective) rc = ds_h5_attr_set_double(file, "scale_fit_objective_initial", r->objective_initial);
    if (!rc && r->has_objective) rc = ds_h5_attr_set_double(file, "scale_fit_objective_final", r->objective_final);
    int rc2 = ds_h5_close(file);
    return rc ? rc : rc2;
}
