/* deltasoup keygen: an Ed25519 key pair for signing deltas (src/sign.h). */
#include "config.h"
#include <getopt.h>
#include <string.h>
#include "src/jobs.h"
#include "src/sign.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx, "usage: deltasoup keygen -o KEY [--overwrite]\n"
                    "Make an Ed25519 key pair for `deltasoup sign`: KEY holds the secret key (mode 0600),\n"
                    "KEY.pub the public key (64 hex digits; put it in an --trusted-keys file for aggregate).\n\n"
                    "  -o, --output KEY   secret key file to write (and KEY.pub)\n"
                    "  --overwrite        replace existing key files\n"
                    "  --quiet            print nothing on success\n"
                    "  -h, --help         this help\n");
}

int ds_job_keygen(ds_ctx *ctx, int argc, char **argv)
{
    enum { O_OVER = 256, O_QUIET };
    static const struct option lo[] = {{"output", required_argument, 0, 'o'},
                                       {"overwrite", no_argument, 0, O_OVER},
                                       {"quiet", no_argument, 0, O_QUIET},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *out = NULL;
    int overwrite = 0, c, rc = 0;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_OVER: overwrite = 1; break;
        case O_QUIET: ctx->quiet = 1; break;
        case 'h': usage(ctx); return 0;
        case ':': rc = ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]); break;
        default: rc = ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]); break;
        }
    }
    if (!rc && optind < argc) rc = ds_err(DS_EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!rc && !out) rc = ds_err(DS_EXIT_USAGE, "-o KEY is required");
    unsigned char pk[DS_SIGN_PK];
    if (!rc && ctx->rank == 0) {
        rc = ds_sign_init();
        if (!rc) rc = ds_sign_keygen(out, overwrite, pk);
    }
    rc = ds_ctx_agree(ctx, rc);
    if (!rc && !ctx->quiet) {
        char hex[2 * DS_SIGN_PK + 1];
        ds_sign_hex(pk, DS_SIGN_PK, hex);
        ds_printf0(ctx, "%s: secret key (mode 0600)\n%s.pub: %s\n", out, out, hex);
    }
    return rc;
}
