/* A text output streamed by rank 0: written to NAME.tmp and renamed into
 * place when every rank succeeded, removed otherwise (the ds_out_* rules of
 * src/ctx.h), so that the file appears whole or not at all. */
#ifndef DS_IO_OUTFILE_H
#define DS_IO_OUTFILE_H
#include <stdio.h>
#include "src/ctx.h"

typedef struct {
    char *path; /* NULL: not opened */
    FILE *f;    /* rank 0 only */
} ds_outfile;

/* Collective: refuse an existing path unless overwrite (DS_EXIT_OUTPUT),
 * then rank 0 opens NAME.tmp. Returns the agreed code. */
int ds_outfile_open(const ds_ctx *ctx, ds_outfile *o, const char *path, int overwrite);
/* Close; when rc is 0 (collective) rename into place, else remove the
 * temporary. Returns rc, or the first failure of closing or renaming. An
 * output never opened returns rc. */
int ds_outfile_close(const ds_ctx *ctx, ds_outfile *o, int rc);
#endif
