/* A text output streamed by rank 0 (io/outfile.h). */
#include "config.h"
#include "io/outfile.h"
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ds_outfile_open(const ds_ctx *ctx, ds_outfile *o, const char *path, int overwrite)
{
    o->path = ds_strdup(path);
    o->f = NULL;
    int rc = ds_out_begin(ctx, path, overwrite);
    if (rc) return rc;
    if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        if (!(o->f = fopen(tmp, "w")))
            rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s: %s", path, tmp, strerror(errno));
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

/* A path's identity: the file's device and inode when it exists, and the
 * resolved path (realpath of the file, else of its folder + its name; the
 * path as given when neither resolves). */
typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    char real[PATH_MAX + 256];
} path_id;

static void path_identify(const char *path, path_id *id)
{
    struct stat st;
    id->exists = stat(path, &st) == 0;
    if (id->exists) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
    }
    char buf[PATH_MAX];
    if (realpath(path, buf)) {
        snprintf(id->real, sizeof id->real, "%s", buf);
        return;
    }
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    const char *name = slash ? slash + 1 : path;
    if (realpath(dir, buf) && *name && strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
        snprintf(id->real, sizeof id->real, "%s%s%s", buf, strcmp(buf, "/") == 0 ? "" : "/", name);
    else
        snprintf(id->real, sizeof id->real, "%s", path);
}

static int path_same(const path_id *a, const path_id *b)
{
    if (a->exists && b->exists && a->dev == b->dev && a->ino == b->ino) return 1;
    return strcmp(a->real, b->real) == 0;
}

int ds_out_check_paths(const char *const *outputs, int n_out, const char *const *inputs, int n_in)
{
    path_id *out = ds_calloc((size_t)(2 * n_out + 1), sizeof *out), in;
    int rc = 0;
    /* each output, then its staging name NAME.tmp */
    for (int i = 0; i < n_out; i++) {
        if (!outputs[i]) continue;
        char tmp[PATH_MAX + 8];
        ds_out_tmpname(outputs[i], tmp, sizeof tmp);
        path_identify(outputs[i], &out[2 * i]);
        path_identify(tmp, &out[2 * i + 1]);
    }
    for (int i = 0; i < n_out && !rc; i++) {
        if (!outputs[i]) continue;
        for (int j = 0; j < i && !rc; j++) {
            if (!outputs[j]) continue;
            if (path_same(&out[2 * i], &out[2 * j]))
                rc = ds_err(DS_EXIT_OUTPUT, "%s: two outputs name the same file (%s and %s)", outputs[i], outputs[j],
                            outputs[i]);
            else if (path_same(&out[2 * i], &out[2 * j + 1]) || path_same(&out[2 * i + 1], &out[2 * j]))
                rc = ds_err(DS_EXIT_OUTPUT, "%s: one output is the staging file (NAME.tmp) of the other (%s and %s)",
                            outputs[i], outputs[j], outputs[i]);
        }
    }
    for (int k = 0; k < n_in && !rc; k++) {
        if (!inputs[k]) continue;
        path_identify(inputs[k], &in);
        for (int i = 0; i < n_out && !rc; i++) {
            if (!outputs[i]) continue;
            if (path_same(&in, &out[2 * i]))
                rc = ds_err(DS_EXIT_OUTPUT, "%s: output is the input %s (an output never replaces an input, even with --overwrite)",
                            outputs[i], inputs[k]);
            else if (path_same(&in, &out[2 * i + 1]))
                rc = ds_err(DS_EXIT_OUTPUT, "%s: its staging file %s.tmp is the input %s", outputs[i], outputs[i], inputs[k]);
        }
    }
    free(out);
    return rc;
}
