/* deltasoup sign: add an Ed25519 signature to delta files (src/sign.h,
 * io/delta_sign.h). Every rank opens each file collectively (its structure
 * checked, errors printed once); rank 0 then re-hashes, signs and replaces
 * the file with its signed copy. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "io/delta_sign.h"
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "src/jobs.h"
#include "src/opts.h"
#include "src/sign.h"

typedef struct {
    const char *key;
    ds_strlist files;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->key) return ds_err(DS_EXIT_USAGE, "--key KEY is required");
    if (o->files.n == 0) return ds_err(DS_EXIT_USAGE, "no delta file to sign (see --help)");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, key, "key", "KEY", "secret key file"),
    DS_OPT_QUIET_AS("print nothing on success"),
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup sign --key KEY D.bd.h5 [D2.bd.h5 ...]",
    .about = "Sign delta files with the Ed25519 secret key KEY (from `deltasoup keygen`): root\n"
             "attributes signature and signer_public_key; the tensor data and content_sha256 stay\n"
             "as they are (docs/aggregate.md). With --quiet nothing is printed on success.",
    .opts = options,
    .pos_off = offsetof(opts, files),
    .pos_max = -1,
    .pos_name = "delta files",
    .check = check};

/* Collective: every file checked before any is signed (a bad third file
 * used to come after the first two were signed): its structure (every rank
 * opens it), then its data against its recorded content_sha256, file i
 * recomputed by rank i % size. */
static int check_all(const ds_ctx *ctx, const opts *o)
{
    int rc = 0;
    for (int i = 0; i < o->files.n && !rc; i++) {
        const char *path = o->files.v[i];
        ds_delta_file *d;
        if ((rc = ds_delta_open(path, ctx->comm, &d))) break;
        const ds_delta_meta *m = ds_delta_get_meta(d);
        int lrc = 0;
        if (i % ctx->size == ctx->rank) {
            ds_delta_rows *r;
            char hex[65];
            lrc = ds_delta_rows_open(path, &r);
            if (!lrc) lrc = ds_delta_rows_content_hash(r, m->n, m->entries, hex);
            ds_delta_rows_close(r);
            if (!lrc && strcmp(hex, m->content_sha256) != 0)
                lrc = ds_err(DS_EXIT_INPUT, "%s: recorded content_sha256 %s does not match the data (%s): not signing "
                                            "any file", path, m->content_sha256[0] ? m->content_sha256 : "(none)", hex);
        }
        ds_delta_close(d);
        rc = ds_ctx_agree(ctx, lrc);
    }
    return rc;
}

/* Collective: open path (structure checked), keep its layout, close; rank 0
 * signs it. */
static int sign_path(const ds_ctx *ctx, const char *path, const unsigned char sk[DS_SIGN_SK])
{
    ds_delta_file *d;
    int rc = ds_delta_open(path, ctx->comm, &d);
    if (rc) return rc;
    ds_delta_meta m = *ds_delta_get_meta(d);
    m.entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(m.n ? m.n : 1));
    memcpy(m.entries, ds_delta_get_meta(d)->entries, sizeof(ds_delta_entry) * (size_t)m.n);
    ds_delta_close(d);
    char sig_hex[129] = "";
    rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_delta_sign_file(path, &m, sk, sig_hex) : 0);
    free(m.entries);
    if (!rc && !ctx->quiet) ds_printf0(ctx, "%s: signed (owner %s, content_sha256 %s)\n", path, m.owner, m.content_sha256);
    return rc;
}

int ds_job_sign(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    unsigned char sk[DS_SIGN_SK];
    if (ctx->rank == 0) {
        rc = ds_sign_init();
        if (!rc) rc = ds_sign_read_secret(o.key, sk);
    }
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) rc = check_all(ctx, &o);
    for (int i = 0; i < o.files.n && !rc; i++) rc = sign_path(ctx, o.files.v[i], sk);
    memset(sk, 0, sizeof sk);
    ds_opts_free(&cmd, &o);
    return rc;
}
