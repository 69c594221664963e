/* A text output streamed by rank 0 (io/outfile.h). */
#include "config.h"
#include "io/outfile.h"
#include <stdlib.h>

int ds_outfile_open(const ds_ctx *ctx, ds_outfile *o, const char *path, int overwrite)
{
    o->path = ds_strdup(path);
    o->f = NULL;
    int rc = ds_out_begin(ctx, path, overwrite);
    if (rc) return rc;
    if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        if (!(o->f = fopen(tmp, "w"))) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    }
    return ds_ctx_agree(ctx, rc);
}

int ds_outfile_close(const ds_ctx *ctx, ds_outfile *o, int rc)
{
    if (!o->path) return rc;
    if (o->f && fclose(o->f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: write failed", o->path);
    o->f = NULL;
    if (!rc) {
        rc = ds_out_finish(ctx, o->path, ds_ctx_agree(ctx, rc));
    } else if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(o->path, tmp, sizeof tmp);
        remove(tmp);
    }
    free(o->path);
    o->path = NULL;
    return rc;
}
