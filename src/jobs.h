/* Every job is one function: int ds_job_NAME(ds_ctx *, int argc, char **argv)
 * returning a ds_exit code. The list lives in src/jobs.def. */
#ifndef DS_JOBS_H
#define DS_JOBS_H
#include "src/ctx.h"

typedef int (*ds_job_fn)(ds_ctx *ctx, int argc, char **argv);
#define DS_JOB(name, fn, summary) int fn(ds_ctx *ctx, int argc, char **argv);
#include "src/jobs.def"
#undef DS_JOB
#endif
