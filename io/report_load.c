/* Reading a history folder for the nightly report (io/report.h). */
#include "io/report.h"
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = ds_malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static json_t *load_json(const char *path, int *rc)
{
    json_error_t e;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = ds_err(DS_EXIT_INPUT, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    json_t *j = json_loadf(f, 0, &e);
    fclose(f);
    if (!j) *rc = ds_err(DS_EXIT_INPUT, "%s:%d: not a JSON file: %s", path, e.line, e.text);
    return j;
}

static double num(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

const char *ds_report_str(const ds_report_night *n, const char *key)
{
    return json_string_value(json_object_get(n->night, key));
}

/* A file named in night.json's "files" (a string relative to the night), or NULL. */
static char *named(const ds_report_night *n, const char *key, const char *nj, int *rc)
{
    json_t *v = json_object_get(json_object_get(n->night, "files"), key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) {
        *rc = ds_err(DS_EXIT_INPUT, "%s: files.%s: expected a file name", nj, key);
        return NULL;
    }
    return join(n->dir, json_string_value(v));
}

/* The L2 norm and the dp epsilon of one inspect --json report of a delta. */
static int load_inspect(const char *path, ds_report_inspect *x)
{
    int rc = 0;
    json_t *j = load_json(path, &rc);
    if (!j) return rc;
    json_t *t = json_object_get(j, "tensors"), *e;
    const char *file = json_string_value(json_object_get(j, "file"));
    json_t *c = json_object_get(j, "content_sha256");
    const char *hash = json_is_string(c) ? json_string_value(c) : json_string_value(json_object_get(c, "computed"));
    if (!file || !json_is_array(t)) {
        json_decref(j);
        return ds_err(DS_EXIT_INPUT, "%s: not an inspect --json report of a delta (needs \"file\" and \"tensors\")", path);
    }
    double s = 0;
    size_t i, d;
    json_array_foreach(t, i, e) {
        double numel = 1, m = num(json_object_get(e, "mean")), sd = num(json_object_get(e, "std"));
        json_t *dim;
        json_array_foreach(json_object_get(e, "shape"), d, dim) numel *= num(dim);
        s += numel * (m * m + sd * sd); /* NaN when a statistic is missing: no norm */
    }
    x->path = ds_strdup(file);
    x->content = ds_strdup(hash ? hash : "");
    x->norm = sqrt(s);
    x->eps = num(json_object_get(json_object_get(j, "dp"), "epsilon"));
    json_decref(j);
    return 0;
}

static ds_report_metric *metric_find(ds_report_night *n, const ds_gate_row *r)
{
    for (int k = 0; k < n->nm; k++)
        if (!strcmp(n->m[k].task, r->task) && !strcmp(n->m[k].data, r->data) && !strcmp(n->m[k].metric, r->metric))
            return &n->m[k];
    n->m = ds_realloc(n->m, sizeof *n->m * (size_t)(n->nm + 1));
    ds_report_metric *m = &n->m[n->nm++];
    memset(m, 0, sizeof *m);
    m->task = r->task, m->metric = r->metric, m->data = ds_strdup(r->data);
    m->base = m->base_se = m->cand = m->cand_se = m->bound = NAN;
    return m;
}

static void metrics_union(ds_report_night *n)
{
    for (int i = 0; n->has_base && i < n->base.n; i++) {
        ds_report_metric *m = metric_find(n, &n->base.rows[i]);
        m->in_base = 1, m->base = n->base.rows[i].value, m->base_se = n->base.rows[i].se;
    }
    for (int i = 0; n->has_cand && i < n->cand.n; i++) {
        ds_report_metric *m = metric_find(n, &n->cand.rows[i]);
        m->in_cand = 1, m->cand = n->cand.rows[i].value, m->cand_se = n->cand.rows[i].se;
    }
}

static int load_evals(ds_report_night *n, const char *nj)
{
    int rc = 0;
    char *p = named(n, "baseline", nj, &rc);
    if (p && !rc) rc = ds_gate_results_load(p, "a single model", NULL, &n->base), n->has_base = 1;
    free(p);
    p = rc ? NULL : named(n, "candidate", nj, &rc);
    if (p && !rc) rc = ds_gate_results_load(p, "a single model", NULL, &n->cand), n->has_cand = 1;
    free(p);
    if (!rc) metrics_union(n);
    return rc;
}

static int load_rest(ds_report_night *n, const char *nj)
{
    int rc = 0;
    json_t *r = json_object_get(n->night, "gate_rule");
    n->min_ratio = json_is_number(json_object_get(r, "min_ratio")) ? num(json_object_get(r, "min_ratio")) : 0.95;
    n->abs_slack = json_is_number(json_object_get(r, "abs_slack")) ? num(json_object_get(r, "abs_slack")) : 0.01;
    n->se_slack = json_is_number(json_object_get(r, "se_slack")) ? num(json_object_get(r, "se_slack")) : 0;
    char *p = named(n, "aggregate", nj, &rc);
    if (p && !rc && (n->agg = load_json(p, &rc)) && !json_is_array(json_object_get(n->agg, "contributors")))
        rc = ds_err(DS_EXIT_INPUT, "%s: not an aggregate --report (no \"contributors\" array)", p);
    free(p);
    if (!rc) rc = load_evals(n, nj);
    json_t *ins = json_object_get(json_object_get(n->night, "files"), "inspect"), *v;
    if (!rc && ins && !json_is_array(ins)) rc = ds_err(DS_EXIT_INPUT, "%s: files.inspect: expected an array of file names", nj);
    size_t i;
    n->ins = ds_calloc(json_array_size(ins) + 1, sizeof *n->ins);
    json_array_foreach(ins, i, v) {
        if (rc) break;
        if (!json_is_string(v)) { rc = ds_err(DS_EXIT_INPUT, "%s: files.inspect[%zu]: expected a file name", nj, i); break; }
        p = join(n->dir, json_string_value(v));
        rc = load_inspect(p, &n->ins[n->ni]);
        if (!rc) n->ni++;
        free(p);
    }
    return rc;
}

static int load_night(const char *dir, ds_report_night *n)
{
    int rc = 0;
    memset(n, 0, sizeof *n);
    n->dir = ds_strdup(dir);
    char *nj = join(dir, "night.json");
    n->night = load_json(nj, &rc);
    const char *fmt = n->night ? json_string_value(json_object_get(n->night, "format")) : NULL;
    if (!rc && (!fmt || strcmp(fmt, "deltasoup.night") != 0 || !ds_report_str(n, "date") || !ds_report_str(n, "status")))
        rc = ds_err(DS_EXIT_INPUT, "%s: not a night record (format \"deltasoup.night\" with \"date\" and \"status\")", nj);
    if (!rc) rc = load_rest(n, nj);
    free(nj);
    return rc;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ds_report_load(const char *dir, ds_report_history *h)
{
    memset(h, 0, sizeof *h);
    h->dir = ds_strdup(dir);
    DIR *d = opendir(dir);
    if (!d) return ds_err(DS_EXIT_INPUT, "%s: cannot open the history folder", dir);
    char **names = NULL;
    int n = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ., .., and staging folders (.NAME.tmp) */
        char *p = join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            names = ds_realloc(names, sizeof *names * (size_t)(n + 1));
            names[n++] = p;
        } else free(p);
    }
    closedir(d);
    if (n == 0) rc = ds_err(DS_EXIT_INPUT, "%s: no nights (subfolders with night.json)", dir);
    if (n) qsort(names, (size_t)n, sizeof *names, by_name);
    h->nights = ds_calloc((size_t)n + 1, sizeof *h->nights);
    for (int k = 0; k < n; k++) {
        if (!rc) rc = load_night(names[k], &h->nights[h->n++]);
        free(names[k]);
    }
    free(names);
    return rc;
}

void ds_report_free(ds_report_history *h)
{
    for (int k = 0; k < h->n; k++) {
        ds_report_night *n = &h->nights[k];
        for (int i = 0; i < n->nm; i++) free(n->m[i].data);
        for (int i = 0; i < n->ni; i++) free(n->ins[i].path), free(n->ins[i].content);
        free(n->m), free(n->ins), free(n->dir);
        if (n->has_base) ds_gate_results_free(&n->base);
        if (n->has_cand) ds_gate_results_free(&n->cand);
        json_decref(n->night), json_decref(n->agg);
    }
    free(h->nights), free(h->dir);
    memset(h, 0, sizeof *h);
}
