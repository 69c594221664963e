/* A delta file in a scale fit (fit-scales, docs/fit-scales.md): the input
 * delta read for src/fitscales.h (its dense entries added to the student,
 * the signs and scales of its coded entries), and the fit's record among
 * the fitted delta's root attributes. */
#ifndef DS_IO_DELTA_FIT_H
#define DS_IO_DELTA_FIT_H
#include <stdint.h>
#include "io/h5_delta.h"
#include "src/ctx.h"
#include "src/fitscales.h"

/* The coded entries of a delta, in delta order, for ds_fitscales_init. */
typedef struct {
    int n;
    ds_fit_coded *c;
    uint64_t **bits; /* c[k].bits, owned */
    float **scales;  /* c[k].scales, owned */
} ds_delta_coded;

/* Independent: check every entry of d against the student's tensors (one
 * of that name and shape: DS_EXIT_INPUT naming d, the tensor and
 * base_path), add the dense entries to the student's f32 weights
 * (ds_delta_add_entry) and read the signs and scales of the coded ones into
 * out (a non-finite scale is DS_EXIT_INPUT). On a pipeline stage's student
 * (ds_llama_init_stage) only the tensors it holds take their dense entries
 * and signs; the coded entries of the others are listed with their scales
 * and bits NULL (every stage keeps every scale). A delta without any coded entry
 * is DS_EXIT_INPUT (nothing to fit). Free out with ds_delta_coded_free,
 * also after an error. */
int ds_delta_read_for_fit(ds_delta_file *d, const char *base_path, ds_llama *student, ds_delta_coded *out);
void ds_delta_coded_free(ds_delta_coded *c);

/* What fit-scales records in its output's root attributes (scale_fit_*). */
typedef struct {
    int64_t steps, batch, seq_len, seed;
    int64_t samples;                   /* training windows used */
    double lr;
    const char *calib_sha256;          /* of the calibration file's bytes */
    const char *from, *input_sha256;   /* the input delta's scale_fit and content hash */
    int has_objective;                 /* held-out objective known (--holdout > 0) */
    double objective_initial, objective_final;
} ds_delta_fit_record;

/* Serial (one rank): add r to the closed delta file at path, the NAME.tmp
 * that ds_delta_commit_staged left (then ds_out_finish puts it in place, so
 * NAME appears complete, fit recorded, or not at all). 0 or a ds_exit code
 * (nothing printed). */
int ds_delta_write_fit_record(const char *path, const ds_delta_fit_record *r);
#endif
