/* eval results read back for the gate (io/gate_results.h). */
#include "io/gate_results.h"
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ds_gate_results_free(ds_gate_results *r)
{
    for (int i = 0; i < r->n; i++) free(r->rows[i].data);
    free(r->rows);
    json_decref(r->doc);
}

const ds_gate_row *ds_gate_results_find(const ds_gate_results *r, const char *task, const char *data,
                                        const char *metric)
{
    for (int k = 0; k < r->n; k++)
        if (!strcmp(r->rows[k].task, task) && !strcmp(r->rows[k].data, data) && !strcmp(r->rows[k].metric, metric))
            return &r->rows[k];
    return NULL;
}

static double num_or_nan(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

int ds_gate_results_load(const char *path, const char *opt, const char *want, ds_gate_results *out)
{
    memset(out, 0, sizeof *out);
    json_error_t e;
    if (!(out->doc = json_load_file(path, 0, &e)))
        return ds_err(DS_EXIT_INPUT, "%s:%d: not a JSON file: %s", path, e.line, e.text);
    json_t *fmt = json_object_get(out->doc, "format"), *rows = json_object_get(out->doc, "results");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "deltasoup.eval") != 0 || !json_is_array(rows))
        return ds_err(DS_EXIT_INPUT, "%s: not deltasoup eval results (format \"deltasoup.eval\" with \"results\")",
                      path);
    const char *only = want;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        const char *d = json_string_value(json_object_get(r, "delta"));
        const char *task = json_string_value(json_object_get(r, "task"));
        const char *data = json_string_value(json_object_get(r, "data"));
        const char *metric = json_string_value(json_object_get(r, "metric"));
        if (!d || !task || !data || !metric)
            return ds_err(DS_EXIT_INPUT, "%s: results[%zu]: needs strings delta, task, data, metric", path, i);
        if (!want && !only) only = d;
        if (!want && strcmp(only, d) != 0)
            return ds_err(DS_EXIT_USAGE, "%s holds several models (%s, %s, ...): choose one with %s NAME", path,
                          only, d, opt);
        if (strcmp(d, only) != 0) continue;
        char *tmp = ds_strdup(data);
        char *base = ds_strdup(basename(tmp));
        free(tmp);
        if (ds_gate_results_find(out, task, base, metric)) {
            int rc = ds_err(DS_EXIT_INPUT, "%s: %s %s %s appears twice for model %s", path, task, base, metric, only);
            free(base);
            return rc;
        }
        out->rows = ds_realloc(out->rows, (size_t)(out->n + 1) * sizeof *out->rows);
        out->rows[out->n++] = (ds_gate_row){.task = task, .metric = metric, .data = base,
                                            .value = num_or_nan(json_object_get(r, "value")),
                                            .se = num_or_nan(json_object_get(r, "se"))};
    }
    if (out->n == 0)
        return ds_err(DS_EXIT_INPUT, "%s: no results%s%s", path, want ? " for model " : "", want ? want : "");
    return 0;
}
