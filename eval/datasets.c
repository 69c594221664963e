/* Benchmark dataset readers (eval/datasets.h). JSON through jansson, whose
 * objects iterate in insertion order (since 2.8), so choices keep the
 * order of the file; CSV through io/csv.h. */
#include "config.h"
#include "eval/datasets.h"
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "io/csv.h"
#include "src/ds.h"

/* ---- JSON helpers */

static int json_fail(const char *path, const json_error_t *e)
{
    return ds_err(DS_EXIT_INPUT, "%s:%d:%d: invalid JSON: %s", path, e->line, e->column, e->text);
}

/* A string member of an object, or NULL with ds_err set. */
static const char *json_str(json_t *obj, const char *key, const char *where)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        ds_err(DS_EXIT_INPUT, "%s: \"%s\" %s", where, key, v ? "is not a string" : "missing");
        return NULL;
    }
    return json_string_value(v);
}

/* ---- TruthfulQA mc_task.json */

static int tqa_choices(json_t *q, const char *key, const char *where, ds_mc_choice **out, int *n)
{
    json_t *t = json_object_get(q, key);
    if (!json_is_object(t) || json_object_size(t) == 0)
        return ds_err(DS_EXIT_INPUT, "%s: \"%s\" %s", where, key,
                      !t ? "missing" : json_is_object(t) ? "has no choices" : "is not an object");
    *n = (int)json_object_size(t);
    *out = ds_malloc((size_t)*n * sizeof **out);
    int k = 0;
    const char *text;
    json_t *v;
    json_object_foreach(t, text, v) {
        if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) != 1))
            return ds_err(DS_EXIT_INPUT, "%s: %s: label of \"%.60s\" is not 0 or 1", where, key, text);
        (*out)[k].text = text;
        (*out)[k].label = (int)json_integer_value(v);
        k++;
    }
    return 0;
}

void ds_truthfulqa_free(ds_truthfulqa *d)
{
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].mc1);
        free(d->items[i].mc2);
    }
    free(d->items);
    json_decref(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_truthfulqa_load(const char *path, ds_truthfulqa *out)
{
    memset(out, 0, sizeof *out);
    json_error_t e;
    /* A repeated choice in one object would silently replace the first. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!root) return json_fail(path, &e);
    out->store_ = root;
    if (!json_is_array(root) || json_array_size(root) == 0) {
        ds_truthfulqa_free(out);
        return ds_err(DS_EXIT_INPUT, "%s: expected a non-empty JSON array of questions", path);
    }
    int n = (int)json_array_size(root);
    out->items = ds_calloc((size_t)n, sizeof *out->items);
    out->n = n;
    for (int i = 0; i < n; i++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: question %d (1-based)", path, i + 1); /* as eval's item errors */
        json_t *q = json_array_get(root, (size_t)i);
        ds_tqa_question *it = &out->items[i];
        int rc = 0;
        if (!json_is_object(q))
            rc = ds_err(DS_EXIT_INPUT, "%s: not an object", where);
        else if (!(it->question = json_str(q, "question", where)))
            rc = DS_EXIT_INPUT;
        else if ((rc = tqa_choices(q, "mc1_targets", where, &it->mc1, &it->n_mc1)) == 0)
            rc = tqa_choices(q, "mc2_targets", where, &it->mc2, &it->n_mc2);
        if (rc) {
            ds_truthfulqa_free(out);
            return rc;
        }
    }
    return 0;
}

/* ---- MT-Bench question.jsonl */

/* An array of strings as a new array of pointers into the JSON. */
static int str_array(json_t *obj, const char *key, const char *where, int optional, const char ***out, int *n)
{
    json_t *a = json_object_get(obj, key);
    *n = 0;
    if (!a && optional) return 0;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return ds_err(DS_EXIT_INPUT, "%s: \"%s\" %s", where, key,
                      !a ? "missing" : json_is_array(a) ? "is empty" : "is not an array");
    *out = ds_malloc(json_array_size(a) * sizeof **out);
    for (size_t k = 0; k < json_array_size(a); k++) {
        json_t *s = json_array_get(a, k);
        if (!json_is_string(s)) return ds_err(DS_EXIT_INPUT, "%s: %s[%zu] is not a string", where, key, k);
        (*out)[(*n)++] = json_string_value(s);
    }
    return 0;
}

void ds_mtbench_free(ds_mtbench *d)
{
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].turns);
        free(d->items[i].reference);
    }
    free(d->items);
    json_decref(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_mtbench_load(const char *path, ds_mtbench *out)
{
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    int rc = ds_read_file(path, &data, &len);
    if (rc) return rc;
    json_t *all = json_array(); /* keeps every line's object alive */
    out->store_ = all;
    int cap = 0, ln = 0, *lines = NULL; /* lines[i]: the line of question i */
    for (char *p = data, *end; p < data + len; p = end + 1) {
        ln++;
        end = memchr(p, '\n', (size_t)(data + len - p));
        if (!end) end = data + len;
        size_t n = (size_t)(end - p);
        if (n && p[n - 1] == '\r') n--;
        if (strspn(p, " \t\r") >= n) continue; /* blank line */
        json_error_t e;
        json_t *q = json_loadb(p, n, JSON_REJECT_DUPLICATES, &e);
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, ln);
        if (!q) {
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: invalid JSON: %s", where, e.column, e.text);
            break;
        }
        json_array_append_new(all, q);
        if (out->n == cap) {
            cap = cap ? 2 * cap : 128;
            out->items = ds_realloc(out->items, (size_t)cap * sizeof *out->items);
            lines = ds_realloc(lines, (size_t)cap * sizeof *lines);
        }
        lines[out->n] = ln;
        ds_mtbench_question *it = &out->items[out->n++];
        memset(it, 0, sizeof *it);
        json_t *id = json_object_get(q, "question_id");
        if (!json_is_object(q)) {
            rc = ds_err(DS_EXIT_INPUT, "%s: not a JSON object", where);
            break;
        }
        if (!json_is_integer(id) || json_integer_value(id) < INT_MIN || json_integer_value(id) > INT_MAX) {
            rc = ds_err(DS_EXIT_INPUT, "%s: \"question_id\" %s", where,
                        !id ? "missing" : json_is_integer(id) ? "is out of range" : "is not an integer");
            break;
        }
        it->question_id = (int)json_integer_value(id);
        /* answers are keyed by question_id: two questions cannot share one */
        for (int j = 0; j < out->n - 1 && !rc; j++)
            if (out->items[j].question_id == it->question_id)
                rc = ds_err(DS_EXIT_INPUT, "%s: lines %d and %d have the same question_id %d", path, lines[j], ln,
                            it->question_id);
        if (rc) break;
        if (!(it->category = json_str(q, "category", where))) {
            rc = DS_EXIT_INPUT;
            break;
        }
        if ((rc = str_array(q, "turns", where, 0, &it->turns, &it->n_turns))) break;
        if ((rc = str_array(q, "reference", where, 1, &it->reference, &it->n_reference))) break;
    }
    free(data);
    free(lines);
    if (!rc && out->n == 0) rc = ds_err(DS_EXIT_INPUT, "%s: no questions", path);
    if (rc) ds_mtbench_free(out);
    return rc;
}

/* ---- CSV datasets */

static const char empty[] = "";

/* Open a CSV and find its columns: names[k] -> cols[k]; optional ones get
 * -1 when absent. */
static int csv_open(const char *path, ds_csv **csv, int n, const char *const *names, const int *optional, int *cols)
{
    *csv = ds_malloc(sizeof **csv);
    int rc = ds_csv_read(path, *csv);
    for (int k = 0; !rc && k < n; k++) {
        cols[k] = ds_csv_col(*csv, names[k]);
        if (cols[k] < 0 && !optional[k]) rc = ds_csv_require_col(*csv, names[k], &cols[k]);
    }
    if (rc) {
        ds_csv_free(*csv);
        free(*csv);
        *csv = NULL;
    }
    return rc;
}

static const char *cell(const ds_csv *csv, int row, int col) { return col < 0 ? empty : ds_csv_get(csv, row, col); }

/* A required non-empty field. */
static int nonempty(const ds_csv *csv, int row, int col, const char *name, const char **out)
{
    *out = ds_csv_get(csv, row, col);
    if (!**out) return ds_err(DS_EXIT_INPUT, "%s:%d: empty \"%s\"", csv->path, csv->line[row], name);
    return 0;
}

static void csv_store_free(void *store)
{
    ds_csv_free(store);
    free(store);
}

void ds_harmbench_free(ds_harmbench *d)
{
    if (!d) return;
    free(d->items);
    csv_store_free(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_harmbench_load(const char *path, ds_harmbench *out)
{
    memset(out, 0, sizeof *out);
    static const char *const names[] = {"Behavior", "FunctionalCategory", "SemanticCategory", "Tags",
                                        "ContextString", "BehaviorID"};
    static const int optional[] = {0, 0, 0, 1, 1, 0};
    int c[6];
    ds_csv *csv;
    int rc = csv_open(path, &csv, 6, names, optional, c);
    if (rc) return rc;
    out->store_ = csv;
    out->n = csv->nrows;
    out->items = ds_calloc((size_t)csv->nrows + 1, sizeof *out->items);
    for (int r = 0; r < csv->nrows && !rc; r++) {
        ds_harmbench_behavior *it = &out->items[r];
        rc = nonempty(csv, r, c[0], names[0], &it->behavior);
        if (!rc) rc = nonempty(csv, r, c[5], names[5], &it->id);
        it->functional_category = cell(csv, r, c[1]);
        it->semantic_category = cell(csv, r, c[2]);
        it->tags = cell(csv, r, c[3]);
        it->context = cell(csv, r, c[4]);
    }
    if (rc) ds_harmbench_free(out);
    return rc;
}

void ds_advbench_free(ds_advbench *d)
{
    if (!d) return;
    free(d->items);
    csv_store_free(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_advbench_load(const char *path, ds_advbench *out)
{
    memset(out, 0, sizeof *out);
    static const char *const names[] = {"goal", "target"};
    static const int optional[] = {0, 0};
    int c[2];
    ds_csv *csv;
    int rc = csv_open(path, &csv, 2, names, optional, c);
    if (rc) return rc;
    out->store_ = csv;
    out->n = csv->nrows;
    out->items = ds_calloc((size_t)csv->nrows + 1, sizeof *out->items);
    for (int r = 0; r < csv->nrows && !rc; r++) {
        rc = nonempty(csv, r, c[0], names[0], &out->items[r].goal);
        out->items[r].target = cell(csv, r, c[1]);
    }
    if (rc) ds_advbench_free(out);
    return rc;
}

void ds_xstest_free(ds_xstest *d)
{
    if (!d) return;
    free(d->items);
    csv_store_free(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_xstest_load(const char *path, ds_xstest *out)
{
    memset(out, 0, sizeof *out);
    static const char *const names[] = {"id", "prompt", "type", "label", "focus", "note"};
    static const int optional[] = {0, 0, 0, 0, 1, 1};
    int c[6];
    ds_csv *csv;
    int rc = csv_open(path, &csv, 6, names, optional, c);
    if (rc) return rc;
    out->store_ = csv;
    out->n = csv->nrows;
    out->items = ds_calloc((size_t)csv->nrows + 1, sizeof *out->items);
    for (int r = 0; r < csv->nrows && !rc; r++) {
        ds_xstest_item *it = &out->items[r];
        const char *id = ds_csv_get(csv, r, c[0]), *label = ds_csv_get(csv, r, c[3]);
        char *end;
        long v = strtol(id, &end, 10);
        if (!*id || *end || v < 0 || v > 1000000000L) {
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: id \"%.40s\" is not a number", path, csv->line[r], id);
            break;
        }
        it->id = (int)v;
        if (strcmp(label, "safe") == 0) {
            it->unsafe = 0;
            out->n_safe++;
        } else if (strcmp(label, "unsafe") == 0) {
            it->unsafe = 1;
            out->n_unsafe++;
        } else {
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: label \"%.40s\" is neither safe nor unsafe", path, csv->line[r], label);
            break;
        }
        rc = nonempty(csv, r, c[1], names[1], &it->prompt);
        it->type = cell(csv, r, c[2]);
        it->focus = cell(csv, r, c[4]);
        it->note = cell(csv, r, c[5]);
    }
    if (rc) ds_xstest_free(out);
    return rc;
}

void ds_truthfulqa_csv_free(ds_truthfulqa_csv *d)
{
    if (!d) return;
    free(d->items);
    csv_store_free(d->store_);
    memset(d, 0, sizeof *d);
}

int ds_truthfulqa_csv_load(const char *path, ds_truthfulqa_csv *out)
{
    memset(out, 0, sizeof *out);
    static const char *const names[] = {"Type", "Category", "Question", "Best Answer", "Correct Answers",
                                        "Incorrect Answers", "Source"};
    static const int optional[] = {1, 1, 0, 0, 0, 0, 1};
    int c[7];
    ds_csv *csv;
    int rc = csv_open(path, &csv, 7, names, optional, c);
    if (rc) return rc;
    out->store_ = csv;
    out->n = csv->nrows;
    out->items = ds_calloc((size_t)csv->nrows + 1, sizeof *out->items);
    for (int r = 0; r < csv->nrows && !rc; r++) {
        ds_tqa_row *it = &out->items[r];
        rc = nonempty(csv, r, c[2], names[2], &it->question);
        it->type = cell(csv, r, c[0]);
        it->category = cell(csv, r, c[1]);
        it->best_answer = cell(csv, r, c[3]);
        it->correct_answers = cell(csv, r, c[4]);
        it->incorrect_answers = cell(csv, r, c[5]);
        it->source = cell(csv, r, c[6]);
    }
    if (rc) ds_truthfulqa_csv_free(out);
    return rc;
}
