/* The results file of `deltasoup eval --json OUT` (format "deltasoup.eval"),
 * read back by the gate: one model's rows (task, data file name, metric,
 * value, standard error). */
#ifndef DS_IO_GATE_RESULTS_H
#define DS_IO_GATE_RESULTS_H
#include "src/ds.h"

typedef struct {
    const char *task, *metric;
    char *data; /* base name: the data file without its folders */
    double value, se; /* NaN when absent */
} ds_gate_row;

typedef struct {
    int n;
    ds_gate_row *rows;
    struct json_t *doc; /* owns task and metric */
} ds_gate_results;

/* The rows of model want (its "delta" column), or of the file's only model
 * when want is NULL (several: DS_EXIT_USAGE naming opt, the option that
 * chooses one). Every error names path: not JSON, not eval results, a row
 * without its strings, a row twice, no rows. Free out either way. */
int ds_gate_results_load(const char *path, const char *opt, const char *want, ds_gate_results *out);
/* The row of (task, data, metric), or NULL. */
const ds_gate_row *ds_gate_results_find(const ds_gate_results *r, const char *task, const char *data,
                                        const char *metric);
void ds_gate_results_free(ds_gate_results *r);
#endif
