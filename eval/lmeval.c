/* eval's results in lm-evaluation-harness's v0.4 results layout
 * (eval/results.h ds_eval_lmeval_doc; docs/eval.md). One model per
 * document, as the harness writes one per run. Task mapping:
 * - truthfulqa-mc: mc1 -> truthfulqa_mc1 "acc", mc2 -> truthfulqa_mc2 "acc"
 *   (the harness's tasks, version 2.0; 0-shot: the primer of
 *   --truthfulqa-prompt harness is part of the harness's doc_to_text);
 * - no harness counterpart, under "deltasoup_" names with eval's metrics:
 *   ppl -> deltasoup_ppl (nll, ppl: per token, not the harness's
 *   word_perplexity), kl -> deltasoup_kl, refusal -> deltasoup_refusal,
 *   xstest -> deltasoup_xstest;
 * - mtbench-answers / mtbench-judge-prompts: no score here (left out).
 * A second task with the same name gets "_2", "_3", ... */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval/results.h"

/* the harness's results key of a metric, "NAME,none" / "NAME_stderr,none" */
static void set_metric(json_t *res, const char *metric, json_t *value, json_t *se)
{
    char key[96];
    snprintf(key, sizeof key, "%s,none", metric);
    json_object_set_new(res, key, value);
    snprintf(key, sizeof key, "%s_stderr,none", metric);
    json_object_set_new(res, key, se);
}

static int original_items(const ds_eval_task *t)
{
    switch (t->kind) {
    case DS_TASK_TQA_MC: return t->tqa.n;
    case DS_TASK_REFUSAL: return t->is_harmbench ? t->harm.n : t->adv.n;
    case DS_TASK_XSTEST: return t->xs.n;
    case DS_TASK_PPL:
    case DS_TASK_KL: return t->docs.n;
    default: return t->n;
    }
}

static const char *output_type(ds_task_kind k)
{
    return k == DS_TASK_TQA_MC ? "multiple_choice" : k == DS_TASK_PPL || k == DS_TASK_KL ? "loglikelihood_rolling"
                                                                                          : "generate_until";
}

/* One harness task: its entries in every top-level table. */
typedef struct {
    json_t *results, *subtasks, *configs, *versions, *nshot, *hib, *nsamples;
} tables;

/* A name not used yet: base, else base_2, base_3, ... (buf holds 96). */
static const char *unique_name(const tables *tb, const char *base, char *buf)
{
    snprintf(buf, 96, "%s", base);
    for (int i = 2; json_object_get(tb->results, buf); i++) snprintf(buf, 96, "%s_%d", base, i);
    return buf;
}

/* Add harness task `name` of plan task t holding eval's rows `metrics` (by
 * metric name, renamed to `as` when not NULL). */
static void add_task(tables *tb, const char *base, const ds_eval_task *t, const ds_eval_opts *o, json_t *const *rows,
                     int nrows, const char *as, double version)
{
    char buf[96];
    const char *name = unique_name(tb, base, buf);
    json_t *res = json_pack("{s:s}", "alias", name), *hib = json_object(), *metrics = json_array();
    int64_t n = t->n;
    for (int i = 0; i < nrows; i++) {
        const char *metric = as ? as : json_string_value(json_object_get(rows[i], "metric"));
        json_t *v = json_object_get(rows[i], "value"), *se = json_object_get(rows[i], "se");
        /* the harness writes "N/A" for a standard error it cannot compute */
        set_metric(res, metric, json_incref(v), json_is_number(se) ? json_incref(se) : json_string("N/A"));
        const char *better = json_string_value(json_object_get(rows[i], "better"));
        json_object_set_new(hib, metric, json_boolean(strcmp(better, "higher") == 0));
        json_array_append_new(metrics, json_pack("{s:s, s:s, s:b}", "metric", metric, "aggregation", "mean",
                                                 "higher_is_better", strcmp(better, "higher") == 0));
        if (i == 0) n = json_integer_value(json_object_get(rows[i], "n"));
    }
    json_object_set_new(tb->results, name, res);
    json_object_set_new(tb->subtasks, name, json_array());
    json_object_set_new(tb->versions, name, json_real(version));
    json_object_set_new(tb->nshot, name, json_integer(0));
    json_object_set_new(tb->hib, name, hib);
    json_object_set_new(tb->nsamples, name, json_pack("{s:i, s:I}", "original", original_items(t), "effective",
                                                      (json_int_t)n));
    json_t *meta = json_pack("{s:f, s:s, s:s}", "version", version, "deltasoup_task", t->spec, "deltasoup_kind",
                             ds_eval_task_name(t));
    if (t->kind == DS_TASK_TQA_MC)
        json_object_set_new(meta, "truthfulqa_prompt", json_string(o->tqa_harness ? "harness" : "plain"));
    if (t->ref) json_object_set_new(meta, "reference_model", json_string(t->ref));
    json_object_set_new(tb->configs, name,
                        json_pack("{s:s, s:s, s:s, s:i, s:o, s:o}", "task", name, "dataset_path", t->data,
                                  "output_type", output_type(t->kind), "num_fewshot", 0, "metric_list", metrics,
                                  "metadata", meta));
}

/* The rows of model label on task t (results order), at most 4. */
static int task_rows(json_t *rows, const char *label, const ds_eval_task *t, json_t **out)
{
    size_t i;
    json_t *r;
    int n = 0;
    json_array_foreach(rows, i, r) {
        if (n < DS_EVAL_MAX_METRICS && strcmp(json_string_value(json_object_get(r, "delta")), label) == 0 &&
            strcmp(json_string_value(json_object_get(r, "task")), ds_eval_task_name(t)) == 0 &&
            strcmp(json_string_value(json_object_get(r, "data")), t->data) == 0)
            out[n++] = r;
    }
    return n;
}

static json_t *config(const char *model, const ds_eval_model *m, const ds_eval_opts *o)
{
    const size_t len = strlen(model) + (m->path ? strlen(m->path) : 0) + 16;
    char *args = ds_malloc(len);
    snprintf(args, len, "model=%s%s%s", model, m->path ? ",delta=" : "", m->path ? m->path : "");
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:[], s:s, s:n, s:o, s:i, s:{s:i, s:b}, s:i}", "model",
                          "deltasoup", "model_args", args, "base_model", model, "delta", m->label, "delta_path",
                          m->path ? json_string(m->path) : json_null(), "batch_size", 1, "batch_sizes", "device", "cpu",
                          "use_cache", "limit", o->limit ? json_integer(o->limit) : json_null(), "bootstrap_iters", 0,
                          "gen_kwargs", "max_gen_toks", o->max_tokens, "do_sample", 0, "seq_len", o->seq_len);
    free(args);
    return c;
}

json_t *ds_eval_lmeval_doc(const char *model, const ds_eval_model *m, const ds_eval_plan *p, const ds_eval_opts *o,
                           json_t *rows, double start, double seconds)
{
    tables tb = {json_object(), json_object(), json_object(), json_object(), json_object(), json_object(),
                 json_object()};
    static const char *const base_names[DS_TASK_COUNT] = {NULL, "deltasoup_refusal", "deltasoup_xstest",
                                                          "deltasoup_ppl", "deltasoup_kl", NULL};
    for (int i = 0; i < p->n_tasks; i++) {
        const ds_eval_task *t = &p->tasks[i];
        json_t *r[DS_EVAL_MAX_METRICS];
        const int nr = task_rows(rows, m->label, t, r);
        if (t->kind == DS_TASK_TQA_MC && nr == 2) {
            add_task(&tb, "truthfulqa_mc1", t, o, &r[0], 1, "acc", 2.0);
            add_task(&tb, "truthfulqa_mc2", t, o, &r[1], 1, "acc", 2.0);
        } else if (base_names[t->kind] && nr > 0) {
            add_task(&tb, base_names[t->kind], t, o, r, nr, NULL, 1.0);
        }
    }
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", seconds);
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:n, s:f, s:s, s:s}", "results", tb.results,
                     "group_subtasks", tb.subtasks, "configs", tb.configs, "versions", tb.versions, "n-shot", tb.nshot,
                     "higher_is_better", tb.hib, "n-samples", tb.nsamples, "config", config(model, m, o), "git_hash",
                     "date", start, "model_name", m->label, "total_evaluation_time_seconds", secs);
}
