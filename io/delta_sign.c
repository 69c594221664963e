/* Signing a delta file in place (io/delta_sign.h). */
#include "io/delta_sign.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_delta_rows.h"
#include "src/ctx.h"

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

/* The signature attributes into a copy of path, which then replaces it. */
static int store_signature(const char *path, const char *sig_hex, const char *pk_hex)
{
    char tmp[4200];
    ds_out_tmpname(path, tmp, sizeof tmp);
    int rc = copy_file(path, tmp);
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

int ds_delta_sign_file(const char *path, const ds_delta_meta *m, const unsigned char sk[DS_SIGN_SK],
                       char sig_hex[129])
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
    return store_signature(path, sig_hex, pk_hex);
}
