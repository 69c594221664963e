/* From item records to eval's outputs (docs/eval.md): records gathered on
 * rank 0 in item order, reduced into metric rows, the results document
 * (--json), the table, the CSV (--csv), the item lines (--items) and
 * MT-Bench answers in FastChat's answer format. Doubles are written with 17
 * significant digits, so they survive a round trip exactly. */
#ifndef DS_EVAL_RESULTS_H
#define DS_EVAL_RESULTS_H
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include "eval/plan.h"
#include "eval/tasks.h"
#include "src/ctx.h"

/* jansson flags of every record and result eval writes */
#define DS_EVAL_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* Collective: rank 0 receives the records of items [0, n) in order, rank r
 * holding mine[0 .. hi - lo) for items [lo, hi) (a contiguous block, blocks
 * in rank order). all[k] are new references on rank 0 (all may be NULL
 * elsewhere). */
void ds_eval_gather(const ds_ctx *ctx, json_t **mine, int64_t lo, int64_t hi, int n, json_t **all);

/* Collective: the items of task t shared out over the ranks of ctx, or
 * over the groups of env->pipe (contiguous blocks, ds_shard_range), each
 * evaluated with env
 * (ds_eval_task_item); rank 0 receives in *all the t->n records in item
 * order (new references; *all is NULL on the other ranks). Returns 0 or the
 * error agreed by the ranks (an item's failure is printed by the agreement). */
int ds_eval_task_records(const ds_ctx *ctx, const ds_eval_task *t, ds_eval_env *env, json_t ***all);

/* Rank 0, one (model, task) evaluated: the metric rows appended to rows,
 * each item's record to items (may be NULL) as a JSON line, MT-Bench
 * answers to answers (mtbench-answers and mtbench-judge-prompts only), the
 * judge prompts to judge (mtbench-judge-prompts only). Releases all[k]. 0,
 * or a ds_exit code with ds_err set when the reduction fails. */
int ds_eval_results_add(json_t *rows, const ds_eval_model *m, const ds_eval_task *t, json_t **all, FILE *items,
                        FILE *answers, FILE *judge);

/* The --json document (new reference): format, model, deltas, tasks,
 * options, results (rows), ranks, seconds. */
json_t *ds_eval_results_doc(const char *model, const ds_eval_plan *p, const ds_eval_opts *o, json_t *rows,
                            int ranks, double seconds);

/* The results of model m (its rows among rows) as lm-evaluation-harness
 * v0.4 writes them (docs/eval.md, "lm-evaluation-harness JSON"; eval/lmeval.c):
 * results per harness task with "metric,none" and "metric_stderr,none"
 * keys, group_subtasks, configs, versions, n-shot, higher_is_better,
 * n-samples, config (the model and its delta), git_hash, date. New
 * reference. */
json_t *ds_eval_lmeval_doc(const char *model, const ds_eval_model *m, const ds_eval_plan *p, const ds_eval_opts *o,
                           json_t *rows, double start, double seconds);

/* The rows for people (stdout, rank 0) and as CSV. */
void ds_eval_print_table(const ds_ctx *ctx, json_t *rows);
void ds_eval_write_csv(FILE *f, json_t *rows);
#endif
