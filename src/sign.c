/* Ed25519 signing of deltas and key files (src/sign.h). */
#include "config.h"
#include "src/sign.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_sign_init(void)
{
    if (sodium_init() < 0) return ds_err(DS_EXIT_FAIL, "libsodium could not be initialised");
    return 0;
}

size_t ds_sign_statement(const char *content_sha256, const char *base_sha256, const char *owner, int has_dp,
                         double dp_epsilon, double dp_delta, char *buf, size_t n)
{
    char e[40] = "none", d[40] = "none";
    if (has_dp) {
        snprintf(e, sizeof e, "%.17g", dp_epsilon);
        snprintf(d, sizeof d, "%.17g", dp_delta);
    }
    int len = snprintf(buf, n,
                       "deltasoup.bitdelta.signature.v1\ncontent_sha256=%s\nbase_sha256=%s\nowner=%s\n"
                       "dp_epsilon=%s\ndp_delta=%s\n",
                       content_sha256, base_sha256, owner, e, d);
    return len < 0 ? 0 : (size_t)len < n ? (size_t)len : n - 1;
}

void ds_sign_detached(const unsigned char sk[DS_SIGN_SK], const char *msg, size_t len, unsigned char sig[DS_SIGN_SIG])
{
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, len, sk);
}

int ds_sign_verify(const unsigned char pk[DS_SIGN_PK], const char *msg, size_t len, const unsigned char sig[DS_SIGN_SIG])
{
    return crypto_sign_verify_detached(sig, (const unsigned char *)msg, len, pk) == 0 ? 0 : -1;
}

void ds_sign_hex(const unsigned char *b, size_t n, char *out) { sodium_bin2hex(out, 2 * n + 1, b, n); }

int ds_sign_decode(const char *text, unsigned char *out, size_t nbytes)
{
    size_t len = strlen(text), got = 0;
    const char *end = NULL;
    if (len == 2 * nbytes && sodium_hex2bin(out, nbytes, text, len, NULL, &got, &end) == 0 && got == nbytes &&
        *end == 0)
        return 0;
    const int variants[2] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING};
    for (int v = 0; v < 2; v++) {
        unsigned char tmp[256];
        if (nbytes > sizeof tmp) return -1;
        if (sodium_base642bin(tmp, sizeof tmp, text, len, NULL, &got, &end, variants[v]) == 0 && got == nbytes &&
            *end == 0) {
            memcpy(out, tmp, nbytes);
            return 0;
        }
    }
    return -1;
}

/* Write text to path atomically with the given mode. */
static int write_atomic(const char *path, const char *text, mode_t mode)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) return ds_err(DS_EXIT_OUTPUT, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ds_err(DS_EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int ds_sign_keygen(const char *path, int overwrite, unsigned char pk[DS_SIGN_PK])
{
    char pub[4200];
    snprintf(pub, sizeof pub, "%s.pub", path);
    if (!overwrite && ds_file_exists(path))
        return ds_err(DS_EXIT_OUTPUT, "%s: key exists (use --overwrite to replace it)", path);
    if (!overwrite && ds_file_exists(pub))
        return ds_err(DS_EXIT_OUTPUT, "%s: key exists (use --overwrite to replace it)", pub);
    unsigned char sk[DS_SIGN_SK];
    crypto_sign_keypair(pk, sk);
    char line[2 * DS_SIGN_SK + 2];
    ds_sign_hex(sk, DS_SIGN_SK, line);
    sodium_memzero(sk, sizeof sk);
    strcat(line, "\n");
    int rc = write_atomic(path, line, 0600);
    sodium_memzero(line, sizeof line);
    if (rc) return rc;
    ds_sign_hex(pk, DS_SIGN_PK, line);
    strcat(line, "\n");
    return write_atomic(pub, line, 0644);
}

/* The first whitespace-separated token of s into tok (at most n - 1 chars);
 * returns the rest of the line after it. */
static const char *token(const char *s, char *tok, size_t n)
{
    while (*s && isspace((unsigned char)*s)) s++;
    size_t k = 0;
    while (*s && !isspace((unsigned char)*s)) {
        if (k + 1 < n) tok[k++] = *s;
        s++;
    }
    tok[k] = 0;
    return s;
}

int ds_sign_read_secret(const char *path, unsigned char sk[DS_SIGN_SK])
{
    /* as ssh does: a secret key others can read (or write) is refused */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
        return ds_err(DS_EXIT_INPUT, "%s: secret key is accessible by others (mode %04o): not used (chmod 600 %s)", path,
                      (unsigned)(st.st_mode & 07777), path);
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    char tok[300], rest[8];
    const char *after = token(text, tok, sizeof tok);
    token(after, rest, sizeof rest);
    if (rest[0] || ds_sign_decode(tok, sk, DS_SIGN_SK) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: not a deltasoup secret key (128 hex digits from `deltasoup keygen`)", path);
    sodium_memzero(text, len);
    sodium_memzero(tok, sizeof tok);
    free(text);
    return rc;
}

int ds_sign_trusted_load(const char *path, ds_trusted_key **keys, int *n)
{
    char *text;
    size_t len;
    *keys = NULL;
    *n = 0;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    int cap = 0, lineno = 0;
    for (char *line = text; line && !rc; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char key[300], owner[DS_NAME_MAX + 2], extra[8];
        const char *rest = token(line, key, sizeof key);
        rest = token(rest, owner, sizeof owner);
        token(rest, extra, sizeof extra);
        if (key[0] && key[0] != '#') {
            ds_trusted_key k;
            memset(&k, 0, sizeof k);
            if (ds_sign_decode(key, k.pk, DS_SIGN_PK) != 0)
                rc = ds_err(DS_EXIT_INPUT, "%s:%d: not an Ed25519 public key (64 hex digits or base64): '%.80s'", path,
                            lineno + 1, key);
            else if (strlen(owner) >= DS_NAME_MAX || extra[0])
                rc = ds_err(DS_EXIT_INPUT, "%s:%d: expected 'KEY [OWNER]'", path, lineno + 1);
            else {
                snprintf(k.owner, sizeof k.owner, "%s", owner);
                if (*n == cap) {
                    cap = cap ? 2 * cap : 8;
                    *keys = ds_realloc(*keys, sizeof(ds_trusted_key) * (size_t)cap);
                }
                (*keys)[(*n)++] = k;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (!rc && *n == 0) rc = ds_err(DS_EXIT_INPUT, "%s: no trusted keys in the file", path);
    if (rc) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

void ds_sign_judge(const ds_trusted_key *keys, int nkeys, const char *sig_hex, const char *pk_hex, const ds_sign_claim *c,
                   char *reason, size_t n)
{
    unsigned char sig[DS_SIGN_SIG], pk[DS_SIGN_PK];
    reason[0] = 0;
    if (!sig_hex) {
        snprintf(reason, n, "unsigned");
        return;
    }
    if (ds_sign_decode(sig_hex, sig, DS_SIGN_SIG) != 0 || ds_sign_decode(pk_hex, pk, DS_SIGN_PK) != 0) {
        snprintf(reason, n, "malformed signature attributes");
        return;
    }
    int known = 0, owner_ok = 0;
    for (int i = 0; i < nkeys; i++)
        if (memcmp(keys[i].pk, pk, DS_SIGN_PK) == 0) {
            known = 1;
            owner_ok |= !keys[i].owner[0] || strcmp(keys[i].owner, c->owner) == 0;
        }
    if (!known) {
        snprintf(reason, n, "signer %.16s... is not a trusted key", pk_hex);
        return;
    }
    if (!owner_ok) {
        snprintf(reason, n, "key %.16s... is not trusted for owner '%.120s'", pk_hex, c->owner);
        return;
    }
    char msg[1024];
    size_t len = ds_sign_statement(c->content_sha256, c->base_sha256, c->owner, c->has_dp, c->dp_epsilon, c->dp_delta, msg,
                                   sizeof msg);
    if (ds_sign_verify(pk, msg, len, sig) != 0) snprintf(reason, n, "bad signature");
}
