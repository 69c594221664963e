/* Ed25519 signatures of delta files (libsodium; docs/aggregate.md "Signing").
 *
 * A signature covers a statement, not the file bytes: the text
 *   deltasoup.bitdelta.signature.v1\n
 *   content_sha256=<hex>\n base_sha256=<hex>\n owner=<owner>\n
 *   dp_epsilon=<%.17g or none>\n dp_delta=<%.17g or none>\n
 * (no spaces after the newlines). The content hash covers the tensor data,
 * so tampered data no longer matches a signed hash; owner and privacy budget
 * are bound too, because the trust filter reads them.
 * Keys: the secret key file holds the 64-byte libsodium secret key (seed +
 * public key) as 128 hex digits on one line, mode 0600; KEY.pub holds the
 * 32-byte public key as 64 hex digits. */
#ifndef DS_SIGN_H
#define DS_SIGN_H
#include <stddef.h>
#include "src/ds.h"

#define DS_SIGN_PK 32
#define DS_SIGN_SK 64
#define DS_SIGN_SIG 64

/* libsodium's own set-up; 0, or DS_EXIT_FAIL with ds_err set. */
int ds_sign_init(void);

/* The statement signed for a delta (see above) into buf; returns its length
 * (DS_EXIT_FAIL-worthy truncation cannot happen for n >= 512 + owner length). */
size_t ds_sign_statement(const char *content_sha256, const char *base_sha256, const char *owner, int has_dp,
                         double dp_epsilon, double dp_delta, char *buf, size_t n);
void ds_sign_detached(const unsigned char sk[DS_SIGN_SK], const char *msg, size_t len,
                      unsigned char sig[DS_SIGN_SIG]);
/* 0 when sig is pk's signature of msg, else -1. */
int ds_sign_verify(const unsigned char pk[DS_SIGN_PK], const char *msg, size_t len,
                   const unsigned char sig[DS_SIGN_SIG]);

/* Lowercase hex of n bytes into out (2n + 1 chars). */
void ds_sign_hex(const unsigned char *b, size_t n, char *out);
/* Exactly nbytes from hex (2 nbytes digits) or standard base64 (with or
 * without padding); 0, or -1 when text is neither. */
int ds_sign_decode(const char *text, unsigned char *out, size_t nbytes);

/* keygen: writes path (secret, mode 0600) and path.pub, each atomically
 * (NAME.tmp, fsync, rename). Existing files: DS_EXIT_OUTPUT unless overwrite.
 * pk receives the public key. */
int ds_sign_keygen(const char *path, int overwrite, unsigned char pk[DS_SIGN_PK]);
/* Read a secret key file (DS_EXIT_INPUT naming the file when malformed). */
int ds_sign_read_secret(const char *path, unsigned char sk[DS_SIGN_SK]);

/* A --trusted-keys file: one key per line (hex or base64), optionally
 * followed by whitespace and the owner id it may sign for; blank lines and
 * lines starting with '#' are skipped. */
typedef struct {
    unsigned char pk[DS_SIGN_PK];
    char owner[DS_NAME_MAX]; /* "" = any owner */
} ds_trusted_key;
int ds_sign_trusted_load(const char *path, ds_trusted_key **keys, int *n);

/* ---- the trust filter's verdict on one delta (aggregate --trusted-keys).
 * What a delta claims, read from its root attributes: the fields of its
 * statement. */
typedef struct {
    const char *content_sha256, *base_sha256, *owner;
    int has_dp;
    double dp_epsilon, dp_delta;
} ds_sign_claim;
/* The delta's signature attributes as recorded (sig_hex: "signature",
 * pk_hex: "signer_public_key"; sig_hex NULL when it has none) against the
 * trusted keys. reason receives "" when pk_hex is one of keys, trusted for
 * c->owner (some entry of that key names no owner or this owner; a key may
 * be listed more than once), and sig_hex is its valid signature of c's
 * statement; else why not: "unsigned", "malformed signature attributes",
 * "signer ... is not a trusted key", "key ... is not trusted for owner
 * '...'", "bad signature". Needs ds_sign_init. The caller still checks that
 * the data hash to c->content_sha256. */
void ds_sign_judge(const ds_trusted_key *keys, int nkeys, const char *sig_hex, const char *pk_hex, const ds_sign_claim *c,
                   char *reason, size_t n);
#endif
