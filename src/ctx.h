/* The distributed context of a job: one place that knows rank and size. */
#ifndef DS_CTX_H
#define DS_CTX_H
#include <mpi.h>
#include "src/ds.h"

typedef struct {
    MPI_Comm comm;
    int rank, size;
    int quiet;       /* --quiet: no progress lines */
    const char *job; /* job name for log prefixes */
} ds_ctx;

/* Collective: combine every rank's status code (0 ok). Returns the largest
 * code; the failing rank with the smallest number prints its ds_errmsg()
 * once, so all ranks leave a collective section together. */
int ds_ctx_agree(const ds_ctx *ctx, int rc);
/* Collective and quiet: whether any rank has a non-zero status (its message
 * is printed later, e.g. by ds_ctx_agree or a commit). */
int ds_ctx_any_failed(const ds_ctx *ctx, int rc);

/* Rank 0 prints to stdout (flushed: Slurm logs show lines as they come). */
void ds_printf0(const ds_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Any rank prints "deltasoup <job>: error: msg" to stderr. */
void ds_error_print(const ds_ctx *ctx, const char *msg);

/* One progress line per step on rank 0, readable in a Slurm log:
 * "[job] step 12/200 (6%) elapsed 3.2s eta 50.1s | <extra>" */
typedef struct {
    const ds_ctx *ctx;
    const char *what;
    int64_t total;
    double t0, last;
} ds_progress;
void ds_progress_init(ds_progress *p, const ds_ctx *ctx, const char *what, int64_t total);
void ds_progress_step(ds_progress *p, int64_t done, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- atomic outputs: write NAME.tmp, rename when every rank succeeded. */
/* Collective: refuse an existing output unless overwrite (DS_EXIT_OUTPUT),
 * remove a stale NAME.tmp. */
int ds_out_begin(const ds_ctx *ctx, const char *path, int overwrite);
/* "path.tmp" */
void ds_out_tmpname(const char *path, char *buf, size_t n);
/* Collective: agree on rc; when all succeeded rank 0 renames the temporary
 * to its final name, else removes it. Returns the agreed code. */
int ds_out_finish(const ds_ctx *ctx, const char *path, int rc);
/* Collective: rank 0 writes doc (json_t, jansson dump flags) to NAME.tmp
 * with a final newline; then ds_out_finish with rc, so the file appears
 * whole or not at all. doc matters on rank 0 only. */
struct json_t;
int ds_out_write_json(const ds_ctx *ctx, const char *path, struct json_t *doc, size_t flags, int rc);
#endif
