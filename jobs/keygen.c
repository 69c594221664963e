/* deltasoup keygen: an Ed25519 key pair for signing deltas (src/sign.h). */
#include "config.h"
#include <string.h>
#include "src/jobs.h"
#include "src/opts.h"
#include "src/sign.h"

typedef struct {
    const char *out;
    int overwrite;
} opts;

static int check(void *p)
{
    const opts *o = p;
    return o->out ? 0 : ds_err(DS_EXIT_USAGE, "-o KEY is required");
}

static const ds_opt options[] = {
    DS_OPT_OUTPUT(opts, out, "KEY", "secret key file to write (and KEY.pub)"),
    DS_OPT_OVERWRITE_AS(opts, overwrite, "replace existing key files (KEY and KEY.pub)"),
    DS_OPT_QUIET_AS("print nothing on success"),
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup keygen -o KEY [--overwrite]",
    .about = "Make an Ed25519 key pair for `deltasoup sign`: KEY holds the secret key (mode 0600),\n"
             "KEY.pub the public key (64 hex digits; put it in an --trusted-keys file for aggregate).\n"
             "--overwrite replaces existing key files; with --quiet nothing is printed on success.",
    .opts = options,
    .check = check};

int ds_job_keygen(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    unsigned char pk[DS_SIGN_PK];
    if (ctx->rank == 0) {
        rc = ds_sign_init();
        if (!rc) rc = ds_sign_keygen(o.out, o.overwrite, pk);
    }
    rc = ds_ctx_agree(ctx, rc);
    if (!rc && !ctx->quiet) {
        char hex[2 * DS_SIGN_PK + 1];
        ds_sign_hex(pk, DS_SIGN_PK, hex);
        ds_printf0(ctx, "%s: secret key (mode 0600)\n%s.pub: %s\n", o.out, o.out, hex);
    }
    return rc;
}
