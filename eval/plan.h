/* What an eval run evaluates (docs/eval.md): the models -- the base and/or
 * base + each delta, in the order given -- and the tasks, in the order given.
 * Built from the job's options (jobs/eval.c); independent (every rank builds
 * the same plan from the same command line). */
#ifndef DS_EVAL_PLAN_H
#define DS_EVAL_PLAN_H
#include "eval/tasks.h"
#include "io/tokenizer.h"
#include "src/ctx.h"
#include "src/model.h"
#include "src/pipeline.h"

/* A model evaluated: the base or base + a delta file. */
typedef struct {
    char *path;  /* NULL: the base */
    char *label; /* "base" or the path as given */
    char *id;    /* model_id of MT-Bench answers: "base" or the file name without .bd.h5 / .h5 */
} ds_eval_model;

typedef struct {
    int n_models;
    ds_eval_model *models;
    int n_tasks;
    ds_eval_task *tasks;
} ds_eval_plan;

/* Append a model: path NULL for the base, else a delta file (not checked). */
void ds_eval_plan_add_model(ds_eval_plan *p, const char *path);
/* Append the delta file path; DS_EXIT_INPUT "--delta PATH: no such file". */
int ds_eval_plan_add_delta(ds_eval_plan *p, const char *path);
/* Append the models of a list file: one delta path per line, blank lines
 * and '#' comments skipped, a line "base" for the base. DS_EXIT_INPUT naming
 * the file (and the line of a missing delta). */
int ds_eval_plan_read_list(ds_eval_plan *p, const char *path);
/* Append the task of a --task spec (ds_eval_task_parse). */
int ds_eval_plan_add_task(ds_eval_plan *p, const char *spec);
/* How many tasks are of kind k. */
int ds_eval_plan_count(const ds_eval_plan *p, ds_task_kind k);
/* DS_EXIT_USAGE when two models would write the same MT-Bench answer file
 * (the same id). */
int ds_eval_plan_unique_ids(const ds_eval_plan *p);
void ds_eval_plan_free(ds_eval_plan *p);

/* Collective: load the checkpoint at model with its tokenizer, then add the
 * delta file at delta (NULL: none; force: made for another base). On failure
 * nothing is left allocated; the message was printed once. */
int ds_eval_load_model(const ds_ctx *ctx, const char *model, const char *delta, int force, ds_llama *m,
                       ds_tokenizer *tok);
/* The same for a pipeline of P stages per group (pipe set up as
 * ds_llama_load_path_pipe; m is this rank's stage); pipe NULL: the whole
 * model. */
int ds_eval_load_stage(const ds_ctx *ctx, const char *model, const char *delta, int force, int P, ds_pipe *pipe,
                       ds_llama *m, ds_tokenizer *tok);
#endif
