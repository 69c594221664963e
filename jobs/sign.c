/* deltasoup sign: add an Ed25519 signature to delta files (src/sign.h).
 * The content hash is recomputed from the data first (a file whose data no
 * longer matches its recorded hash is not signed); the signature attributes
 * go into a copy (NAME.tmp) that replaces the file by rename, so a reader
 * never sees a half-signed file and the tensor data, hence content_sha256,
 * is unchanged. Rank 0 does the work. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "src/jobs.h"
#include "src/sign.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx, "usage: deltasoup sign --key KEY D.bd.h5 [D2.bd.h5 ...]\n"
                    "Sign delta files with the Ed25519 secret key KEY (from `deltasoup keygen`): root\n"
                    "attributes signature and signer_public_key; the tensor data and content_sha256 stay\n"
                    "as they are (docs/aggregate.md).\n\n"
                    "  --key KEY    secret key file\n"
                    "  --quiet      print nothing on success\n"
                    "  -h, --help   this help\n");
}

/* Byte copy of src to dst (created with src's mode), flushed to disk. */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY), out = -1, rc = 0;
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) rc = ds_err(DS_EXIT_INPUT, "%s: cannot read: %s", src, strerror(errno));
    if (!rc) out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, st.st_mode & 0777);
    if (!rc && out < 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot create: %s", dst, strerror(errno));
    char *buf = ds_malloc(1 << 20);
    for (ssize_t k; !rc && (k = read(in, buf, 1 << 20)) != 0;) {
        if (k < 0 || write(out, buf, (size_t)k) != k) rc = ds_err(DS_EXIT_OUTPUT, "%s: copy failed: %s", dst, strerror(errno));
    }
    if (!rc && fsync(out) != 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: %s", dst, strerror(errno));
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: %s", dst, strerror(errno));
    return rc;
}

/* Rank 0: check the data against the recorded hash, sign, store. */
static int sign_one(const char *path, const ds_delta_meta *m, const unsigned char sk[DS_SIGN_SK], char sig_hex[129])
{
    ds_delta_rows *r;
    char hex[65];
    int rc = ds_delta_rows_open(path, &r);
    if (rc) return rc;
    rc = ds_delta_rows_content_hash(r, m->n, m->entries, hex);
    ds_delta_rows_close(r);
    if (rc) return rc;
    if (strcmp(hex, m->content_sha256) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: recorded content_sha256 %s does not match the data (%s): not signing", path,
                      m->content_sha256[0] ? m->content_sha256 : "(none)", hex);
    char msg[1024];
    unsigned char sig[DS_SIGN_SIG];
    size_t len = ds_sign_statement(m->content_sha256, m->base_sha256, m->owner, m->has_dp, m->dp_epsilon,
                                   m->dp_delta, msg, sizeof msg);
    ds_sign_detached(sk, msg, len, sig);
    char pk_hex[65];
    ds_sign_hex(sig, DS_SIGN_SIG, sig_hex);
    ds_sign_hex(sk + 32, DS_SIGN_PK, pk_hex); /* libsodium's secret key = seed || public key */
    char tmp[4200];
    ds_out_tmpname(path, tmp, sizeof tmp);
    rc = copy_file(path, tmp);
    hid_t f = H5I_INVALID_HID;
    if (!rc) rc = ds_h5_open_rw_serial(tmp, &f);
    if (!rc) rc = ds_h5_attr_set_str(f, "signature", sig_hex);
    if (!rc) rc = ds_h5_attr_set_str(f, "signer_public_key", pk_hex);
    if (!rc) rc = ds_h5_attr_set_str(f, "signature_scheme", "ed25519/deltasoup.bitdelta.signature.v1");
    if (f >= 0) {
        int rc2 = ds_h5_close(f);
        if (!rc) rc = rc2;
    }
    if (!rc && rename(tmp, path) != 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot replace: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int ds_job_sign(ds_ctx *ctx, int argc, char **argv)
{
    enum { O_KEY = 256, O_QUIET };
    static const struct option lo[] = {{"key", required_argument, 0, O_KEY},
                                       {"quiet", no_argument, 0, O_QUIET},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *key = NULL;
    int c, rc = 0;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case O_KEY: key = optarg; break;
        case O_QUIET: ctx->quiet = 1; break;
        case 'h': usage(ctx); return 0;
        case ':': rc = ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]); break;
        default: rc = ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]); break;
        }
    }
    if (!rc && !key) rc = ds_err(DS_EXIT_USAGE, "--key KEY is required");
    if (!rc && optind >= argc) rc = ds_err(DS_EXIT_USAGE, "no delta file to sign (see --help)");
    unsigned char sk[DS_SIGN_SK];
    if (!rc && ctx->rank == 0) {
        rc = ds_sign_init();
        if (!rc) rc = ds_sign_read_secret(key, sk);
    }
    rc = ds_ctx_agree(ctx, rc);
    for (int i = optind; i < argc && !rc; i++) {
        ds_delta_file *d;
        rc = ds_delta_open(argv[i], ctx->comm, &d); /* collective: checks the structure, prints errors once */
        if (rc) break;
        /* Keep the layout, close, then let rank 0 reopen serially to sign. */
        ds_delta_meta m = *ds_delta_get_meta(d);
        m.entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(m.n ? m.n : 1));
        memcpy(m.entries, ds_delta_get_meta(d)->entries, sizeof(ds_delta_entry) * (size_t)m.n);
        ds_delta_close(d);
        char sig_hex[129] = "";
        int rc1 = ctx->rank == 0 ? sign_one(argv[i], &m, sk, sig_hex) : 0;
        free(m.entries);
        rc = ds_ctx_agree(ctx, rc1);
        if (!rc && !ctx->quiet) ds_printf0(ctx, "%s: signed (owner %s, content_sha256 %s)\n", argv[i], m.owner, m.content_sha256);
    }
    memset(sk, 0, sizeof sk);
    return rc;
}
