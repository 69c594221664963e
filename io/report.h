/* The nightly report (deltasoup report): a history folder read into memory,
 * and the self-contained HTML page written from it (inline CSS, inline SVG
 * charts of src/svg.h, no script, nothing fetched). docs/report.md.
 *
 * A history folder holds one subfolder per night (any name; sorted by name,
 * which is the night's date YYYY-MM-DD as the nightly script writes them)
 * with night.json (format "deltasoup.night") naming the night's other files,
 * relative to the subfolder, under "files": "aggregate" (aggregate --report),
 * "baseline" and "candidate" (eval --json OUT of the previous reference and
 * of tonight's soup), "gate" (gate's printed table), "inspect" (an array of
 * inspect --json outputs of the contributors). Any of them may be absent (a
 * night that stopped early); one that is named must be readable. */
#ifndef DS_IO_REPORT_H
#define DS_IO_REPORT_H
#include <stdio.h>
#include "io/gate_results.h"

typedef struct {
    const char *task, *metric;
    char *data;
    double base, base_se, cand, cand_se; /* NaN when absent */
    int in_base, in_cand;
    int better;        /* filled by the caller: 1 higher, -1 lower, 0 not gated */
    double bound;      /* filled by the caller: the gate's threshold (NaN: none) */
    char verdict[48];  /* filled by the caller: pass, FAIL, not gated, ... */
} ds_report_metric;

typedef struct {
    char *path;        /* the inspected file, as inspect names it */
    char *content;     /* its computed content hash */
    double norm;       /* L2 norm of the delta values: sqrt(sum numel (mean^2 + std^2)) */
    double eps;        /* dp epsilon, NaN when none is recorded */
} ds_report_inspect;

typedef struct {
    char *dir;                         /* the night's folder */
    struct json_t *night, *agg;        /* night.json, the aggregate report (or NULL) */
    ds_gate_results base, cand;
    int has_base, has_cand;
    int nm;
    ds_report_metric *m;               /* the union of the baseline's and the candidate's rows */
    int ni;
    ds_report_inspect *ins;
    double min_ratio, abs_slack, se_slack; /* the night's gate rule (night.json "gate_rule", else gate's defaults) */
} ds_report_night;

typedef struct {
    char *dir;
    int n;
    ds_report_night *nights; /* oldest first */
} ds_report_history;

/* Read every night of dir. Errors (DS_EXIT_INPUT) name the file: a night
 * folder without night.json, a file that is not JSON or not of its kind. No
 * night at all is an error too. Free h either way. */
int ds_report_load(const char *dir, ds_report_history *h);
void ds_report_free(ds_report_history *h);
/* The night's string field, or NULL. */
const char *ds_report_str(const ds_report_night *n, const char *key);
/* Write the page about night `tonight` (an index into h->nights) with the
 * charts over every night. version: the toolkit's, for the footer. */
void ds_report_write_html(FILE *f, const ds_report_history *h, int tonight, const char *version);
#endif
