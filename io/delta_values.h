/* A delta file's entry as the float32 values it stands for: g(2b - 1) of a
 * coded entry (signs and scales expanded), the values of a dense one. */
#ifndef DS_IO_DELTA_VALUES_H
#define DS_IO_DELTA_VALUES_H
#include "io/h5_delta_rows.h"

/* Entry e of the delta file path (open as r) into v (numel floats). Every
 * scale and dense value must be finite (else DS_EXIT_INPUT naming path, the
 * tensor and the index). */
int ds_delta_rows_values(ds_delta_rows *r, const char *path, const ds_delta_entry *e, float *v);
#endif
