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

/* The output-path rule of every job (docs/robustness.md "Outputs never
 * replace inputs"), with or without --overwrite: no output may be an input,
 * another output, or the staging name (NAME.tmp) of an output. Two paths
 * are the same file when both exist with the same device and inode, or when
 * they resolve to the same path (realpath of the file, or of its folder plus
 * its name for a file that does not exist yet). NULL entries (options not
 * given) are skipped. Serial and cheap (stat, realpath): every rank may call
 * it, the caller agrees (ds_ctx_agree). Returns 0 or DS_EXIT_OUTPUT with one
 * message naming both paths. */
int ds_out_check_paths(const char *const *outputs, int n_out, const char *const *inputs, int n_in);
#endif
