/* Statistics of stored tensors, as inspect reports them (docs/cli.md): the
 * values of a tensor in any dtype, and the delta values a 1-bit coded delta
 * entry stands for (from its sign bits and scales). Computed in double, in
 * storage order, so the numbers depend only on the data. */
#ifndef DS_TENSOR_STATS_H
#define DS_TENSOR_STATS_H
#include <stdint.h>
#include "src/bitdelta.h"
#include "src/ds.h"
#include "src/hash.h"

/* min/max/mean/std (population) over the finite values; NaN when none is
 * finite. */
typedef struct {
    ds_tinfo info;
    double min, max, mean, std;
    int64_t nonfinite;
    ds_digest digest; /* ds_entry_digest of the stored data */
} ds_tensor_stats;

/* Stats of data (numel elements of t->dtype, any ds_dtype). */
void ds_tensor_stats_compute(const ds_tinfo *t, const void *data, ds_tensor_stats *s);

/* The values a coded entry stands for, g_j (2b - 1) for the scale g_j of
 * each group j (a row, a column or the whole tensor) and each sign bit b:
 * min, max, mean, std (population) into out[0..4). Groups with a non-finite
 * scale are left out, as ds_tensor_stats_compute leaves out non-finite
 * values. bits: rows x words_per_row, sc: n_scales. */
void ds_delta_value_stats(const ds_delta_entry *e, const uint64_t *bits, const float *sc, double out[4]);
#endif
