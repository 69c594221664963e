/* deltasoup eval with --task: many tasks over the base model and many
 * deltas (docs/eval.md). jobs/eval.c hands its command line over when it
 * asks for more than the plain --ppl report. */
#ifndef DS_JOBS_EVAL_TASKS_H
#define DS_JOBS_EVAL_TASKS_H
#include "src/ctx.h"

/* 1 when argv (argv[0] the job name) uses an option only the task runner
 * knows: --task, --delta-list, --csv, --items, --answers-dir, --limit,
 * --max-tokens, --json followed by a file name, or --delta twice. */
int ds_eval_tasks_wanted(int argc, char **argv);
/* The eval job's task runner: parse, evaluate, print, write outputs.
 * Returns a ds_exit code (messages already printed). */
int ds_eval_tasks_main(ds_ctx *ctx, int argc, char **argv);
/* Its --help text (rank 0). */
void ds_eval_tasks_usage(const ds_ctx *ctx);
#endif
