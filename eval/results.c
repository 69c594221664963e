/* From item records to eval's outputs (eval/results.h). */
#include "config.h"
#include "eval/results.h"
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "src/hash.h"
#include "src/shard.h"

/* ---- gathering records */

/* Each rank sends its contiguous block as JSON lines. */
void ds_eval_gather(const ds_ctx *ctx, json_t **mine, int64_t lo, int64_t hi, int n, json_t **all)
{
    size_t len = 0;
    char **s = ds_malloc(((size_t)(hi - lo) + 1) * sizeof *s);
    for (int64_t k = lo; k < hi; k++) {
        s[k - lo] = mine[k - lo] ? json_dumps(mine[k - lo], DS_EVAL_JSON_FLAGS) : NULL;
        if (!s[k - lo]) ds_die("eval: record %lld cannot be written as JSON", (long long)k);
        len += strlen(s[k - lo]) + 1;
    }
    if (len > (size_t)1 << 30) ds_die("eval: records of one rank exceed 1 GiB");
    char *buf = ds_malloc(len + 1), *p = buf;
    for (int64_t k = lo; k < hi; k++) {
        const size_t n1 = strlen(s[k - lo]);
        memcpy(p, s[k - lo], n1);
        p[n1] = '\n';
        p += n1 + 1;
        free(s[k - lo]);
    }
    free(s);
    int mylen = (int)len, *lens = NULL, *displs = NULL;
    char *recv = NULL;
    if (ctx->rank == 0) {
        lens = ds_malloc((size_t)ctx->size * sizeof *lens);
        displs = ds_malloc((size_t)ctx->size * sizeof *displs);
    }
    MPI_Gather(&mylen, 1, MPI_INT, lens, 1, MPI_INT, 0, ctx->comm);
    if (ctx->rank == 0) {
        int64_t tot = 0;
        for (int r = 0; r < ctx->size; r++) {
            if (tot + lens[r] > INT32_MAX) ds_die("eval: gathered records exceed 2 GiB");
            displs[r] = (int)tot;
            tot += lens[r];
        }
        recv = ds_malloc((size_t)tot + 1);
        recv[tot] = 0;
    }
    MPI_Gatherv(buf, mylen, MPI_CHAR, recv, lens, displs, MPI_CHAR, 0, ctx->comm);
    if (ctx->rank == 0) {
        char *line = recv;
        for (int k = 0; k < n; k++) {
            char *nl = strchr(line, '\n');
            json_error_t err;
            all[k] = nl ? json_loadb(line, (size_t)(nl - line), 0, &err) : NULL;
            if (!all[k]) ds_die("eval: record %d did not arrive intact", k);
            line = nl + 1;
        }
    }
    free(recv);
    free(lens);
    free(displs);
    free(buf);
}

int ds_eval_task_records(const ds_ctx *ctx, const ds_eval_task *t, ds_eval_env *env, json_t ***all)
{
    int64_t lo, hi;
    /* through a pipeline the groups share out the items; every stage of a
     * group evaluates its items (forward-only kinds running ahead of the
     * last stage, which alone builds their records), the last stage's
     * records are gathered; the last stage's error is the group's */
    const ds_pipe *p = env->pipe;
    ds_shard_range(t->n, p ? p->group : ctx->rank, p ? p->groups : ctx->size, &lo, &hi);
    json_t **mine = ds_calloc((size_t)(hi - lo) + 1, sizeof *mine);
    int rc = 0;
    ds_eval_pipe_begin(env, ds_eval_task_ahead(t));
    for (int64_t k = lo; k < hi && !rc && !ds_eval_pipe_stopped(env); k++)
        rc = ds_eval_task_item(t, env, (int)k, &mine[k - lo]);
    rc = ds_ctx_agree(ctx, ds_eval_pipe_end(env, rc));
    *all = ctx->rank == 0 ? ds_calloc((size_t)t->n + 1, sizeof **all) : NULL;
    if (!rc) ds_eval_gather(ctx, mine, lo, p && !p->last ? lo : hi, t->n, *all);
    for (int64_t k = lo; k < hi; k++) json_decref(mine[k - lo]);
    free(mine);
    return rc;
}

/* ---- one (model, task) on rank 0 */

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* FastChat's answer record; answer_id is derived from the content, so runs
 * with any number of ranks write the same ids. */
static void write_answer(FILE *f, const char *model_id, const json_t *rec)
{
    json_t *turns = json_object_get(rec, "turns");
    char *t = json_dumps(turns, DS_EVAL_JSON_FLAGS);
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(json_object_get(rec, "question_id")));
    ds_sha256 *h = ds_sha256_new();
    ds_sha256_update(h, model_id, strlen(model_id) + 1);
    ds_sha256_update(h, buf, strlen(buf) + 1);
    ds_sha256_update(h, t, strlen(t));
    ds_digest d;
    ds_sha256_final(h, &d);
    char hex[65];
    ds_digest_hex(&d, hex);
    hex[22] = 0; /* as long as FastChat's shortuuid ids */
    json_t *o = json_pack("{s:O, s:s, s:s, s:[{s:i, s:O}], s:f}", "question_id",
                          json_object_get(rec, "question_id"), "answer_id", hex, "model_id", model_id, "choices",
                          "index", 0, "turns", turns, "tstamp", (double)time(NULL));
    char *s = json_dumps(o, JSON_COMPACT);
    fprintf(f, "%s\n", s);
    free(s);
    free(t);
    json_decref(o);
}

/* Item k's line of --items: which model, task and item, then the record. */
static void write_item(FILE *f, const ds_eval_model *m, const ds_eval_task *t, int k, const json_t *rec)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:i}", "delta", m->label, "task", t->spec, "item", k, "index", t->index[k]);
    json_object_update(o, (json_t *)rec);
    char *s = json_dumps(o, DS_EVAL_JSON_FLAGS);
    fprintf(f, "%s\n", s);
    free(s);
    json_decref(o);
}

int ds_eval_results_add(json_t *rows, const ds_eval_model *m, const ds_eval_task *t, json_t **all, FILE *items,
                        FILE *answers, FILE *judge)
{
    int rc = 0;
    ds_eval_metric met[DS_EVAL_MAX_METRICS];
    int nm = ds_eval_task_reduce(t, all, met);
    if (nm < 0) rc = ds_errcode() ? ds_errcode() : DS_EXIT_FAIL;
    for (int i = 0; i < nm; i++) {
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:s}", "delta", m->label, "task",
                                ds_eval_task_name(t), "data", t->data, "metric", met[i].metric, "value",
                                num_or_null(met[i].value), "n", (json_int_t)met[i].n, "se", num_or_null(met[i].se),
                                "better", ds_better_name(met[i].better));
        if (t->ref) json_object_set_new(row, "ref", json_string(t->ref));
        json_array_append_new(rows, row);
    }
    for (int k = 0; k < t->n; k++) {
        if (items) write_item(items, m, t, k, all[k]);
        if (t->kind == DS_TASK_MTBENCH) write_answer(answers, m->id, all[k]);
        if (t->kind == DS_TASK_MTBENCH && t->mt_judge)
            ds_mt_judge_write(judge, &t->judge, &t->mt.items[t->index[k]], m->id, m->label,
                              json_object_get(all[k], "turns"));
        json_decref(all[k]);
    }
    return rc;
}

json_t *ds_eval_results_doc(const char *model, const ds_eval_plan *p, const ds_eval_opts *o, json_t *rows,
                            int ranks, double seconds)
{
    json_t *tasks = json_array(), *models = json_array();
    for (int i = 0; i < p->n_tasks; i++)
        json_array_append_new(tasks, json_pack("{s:s, s:s, s:s, s:i}", "spec", p->tasks[i].spec, "task",
                                               ds_eval_task_name(&p->tasks[i]), "data", p->tasks[i].data, "n",
                                               p->tasks[i].n));
    for (int i = 0; i < p->n_models; i++) json_array_append_new(models, json_string(p->models[i].label));
    json_t *doc = json_pack("{s:s, s:i, s:s, s:o, s:o, s:{s:i, s:i, s:i}, s:O, s:i, s:f}", "format", "deltasoup.eval",
                            "format_version", 1, "model", model, "deltas", models, "tasks", tasks, "options", "limit",
                            o->limit, "max_tokens", o->max_tokens, "seq_len", o->seq_len, "results", rows, "ranks",
                            ranks, "seconds", seconds);
    /* a model's chat template (none, the plain dialogue, is left out: the documents of before templates) */
    if (o->chat_template && strcmp(o->chat_template, "none") != 0)
        json_object_set_new(json_object_get(doc, "options"), "chat_template", json_string(o->chat_template));
    if (o->tqa_harness) json_object_set_new(json_object_get(doc, "options"), "truthfulqa_prompt", json_string("harness"));
    return doc;
}

/* ---- the rows for people and as CSV */

void ds_eval_print_table(const ds_ctx *ctx, json_t *rows)
{
    ds_printf0(ctx, "%-24s %-16s %-24s %-20s %14s %12s %7s\n", "delta", "task", "data", "metric", "value", "se", "n");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        char *d = ds_strdup(json_string_value(json_object_get(r, "data")));
        json_t *v = json_object_get(r, "value"), *se = json_object_get(r, "se");
        char vs[32] = "-", ses[32] = "-";
        if (json_is_number(v)) snprintf(vs, sizeof vs, "%.6f", json_number_value(v));
        if (json_is_number(se)) snprintf(ses, sizeof ses, "%.6f", json_number_value(se));
        ds_printf0(ctx, "%-24s %-16s %-24s %-20s %14s %12s %7lld\n", json_string_value(json_object_get(r, "delta")),
                   json_string_value(json_object_get(r, "task")), basename(d),
                   json_string_value(json_object_get(r, "metric")), vs, ses,
                   (long long)json_integer_value(json_object_get(r, "n")));
        free(d);
    }
}

/* RFC 4180: quote a field holding a comma, quote or line break. */
static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputs(last ? "\n" : ",", f);
}

void ds_eval_write_csv(FILE *f, json_t *rows)
{
    fputs("delta,task,data,metric,value,n,se,better\n", f);
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        char v[64] = "", se[64] = "", n[32];
        json_t *jv = json_object_get(r, "value"), *js = json_object_get(r, "se");
        if (json_is_number(jv)) snprintf(v, sizeof v, "%.17g", json_number_value(jv));
        if (json_is_number(js)) snprintf(se, sizeof se, "%.17g", json_number_value(js));
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(r, "n")));
        csv_field(f, json_string_value(json_object_get(r, "delta")), 0);
        csv_field(f, json_string_value(json_object_get(r, "task")), 0);
        csv_field(f, json_string_value(json_object_get(r, "data")), 0);
        csv_field(f, json_string_value(json_object_get(r, "metric")), 0);
        csv_field(f, v, 0);
        csv_field(f, n, 0);
        csv_field(f, se, 0);
        csv_field(f, json_string_value(json_object_get(r, "better")), 1);
    }
}
