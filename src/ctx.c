/* Distributed context: status agreement, rank-0 logging, progress, atomic outputs. */
#include "config.h"
#include "src/ctx.h"
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ds_error_print(const ds_ctx *ctx, const char *msg)
{
    fprintf(stderr, "deltasoup %s: error: %s\n", ctx && ctx->job ? ctx->job : "", msg);
    fflush(stderr);
}

int ds_ctx_agree(const ds_ctx *ctx, int rc)
{
    int in[2] = {rc, rc ? ctx->rank : ctx->size}, out[2];
    MPI_Allreduce(&in[0], &out[0], 1, MPI_INT, MPI_MAX, ctx->comm);
    MPI_Allreduce(&in[1], &out[1], 1, MPI_INT, MPI_MIN, ctx->comm);
    if (rc && ctx->rank == out[1]) ds_error_print(ctx, ds_errmsg());
    return out[0];
}

int ds_ctx_any_failed(const ds_ctx *ctx, int rc)
{
    int any;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, ctx->comm);
    return any;
}

void ds_printf0(const ds_ctx *ctx, const char *fmt, ...)
{
    if (ctx->rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void ds_progress_init(ds_progress *p, const ds_ctx *ctx, const char *what, int64_t total)
{
    p->ctx = ctx;
    p->what = what;
    p->total = total;
    p->t0 = p->last = ds_now();
}

void ds_progress_step(ds_progress *p, int64_t done, const char *fmt, ...)
{
    if (p->ctx->rank != 0 || p->ctx->quiet) return;
    double now = ds_now(), el = now - p->t0;
    double eta = done > 0 ? el * (double)(p->total - done) / (double)done : -1;
    char e1[32], e2[32], extra[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    printf("[%s] %s %lld/%lld (%d%%) elapsed %s eta %s%s%s\n", p->ctx->job ? p->ctx->job : "",
           p->what, (long long)done, (long long)p->total,
           p->total ? (int)(100.0 * (double)done / (double)p->total) : 100, ds_fmt_duration(el, e1, sizeof e1),
           ds_fmt_duration(eta, e2, sizeof e2), extra[0] ? " | " : "", extra);
    fflush(stdout);
    p->last = now;
}

void ds_out_tmpname(const char *path, char *buf, size_t n) { snprintf(buf, n, "%s.tmp", path); }

/* The folder that will hold path must exist and take new files (the staged
 * NAME.tmp and the rename): else DS_EXIT_OUTPUT in *rc naming the folder and
 * the reason (strerror), before any library (MPI-IO) reports it less clearly. */
static int out_dir_writable(const char *path, int *rc)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) == 0) return 0;
    *rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write in folder %s: %s", path, dir, strerror(errno));
    return -1;
}

int ds_out_begin(const ds_ctx *ctx, const char *path, int overwrite)
{
    int rc = 0;
    if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        if (!overwrite && ds_file_exists(path))
            rc = ds_err(DS_EXIT_OUTPUT, "%s: output exists (use --overwrite to replace it)", path);
        else if (out_dir_writable(path, &rc) != 0) {
            /* rc set: the folder is missing or not writable, with the reason */
        }
        else if (unlink(tmp) != 0 && errno != ENOENT)
            rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot remove stale %s: %s", path, tmp, strerror(errno));
    }
    return ds_ctx_agree(ctx, rc);
}

int ds_out_finish(const ds_ctx *ctx, const char *path, int rc)
{
    rc = ds_ctx_agree(ctx, rc);
    int rc2 = 0;
    if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        if (rc == 0) {
            if (rename(tmp, path) != 0)
                rc2 = ds_err(DS_EXIT_OUTPUT, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        }
        if (rc || rc2) unlink(tmp);
    }
    rc2 = ds_ctx_agree(ctx, rc2);
    return rc ? rc : rc2;
}

int ds_out_write_json(const ds_ctx *ctx, const char *path, json_t *doc, size_t flags, int rc)
{
    if (ctx->rank == 0 && !rc) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        char *text = doc ? json_dumps(doc, flags) : NULL;
        errno = 0;
        FILE *f = text ? fopen(tmp, "w") : NULL;
        int bad = !f || fprintf(f, "%s\n", text) < 0;
        if (f && fclose(f) != 0) bad = 1;
        if (bad)
            rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s%s%s", path, tmp, errno ? ": " : "", errno ? strerror(errno) : "");
        free(text);
    }
    return ds_out_finish(ctx, path, rc);
}
