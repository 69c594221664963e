/* SHA-256 (OpenSSL libcrypto) and the rank-independent content hash.
 *
 * Content hash of a file = SHA-256 over the 32-byte digests of its entries
 * in byte order of their names. An entry's digest = SHA-256 over: the name,
 * a NUL, the dtype name (ds_dtype_name), a NUL, ndim as uint32 LE, each dim
 * as uint64 LE, then the elements little-endian. Entries are tensors of a
 * model, or the parts of a delta ("<tensor>/bits", "<tensor>/scale", ...).
 * Whoever holds an entry hashes it; digests are gathered, so the result does
 * not depend on the number of ranks or on HDF5 chunking (docs/formats.md). */
#ifndef DS_HASH_H
#define DS_HASH_H
#include "src/ctx.h"

typedef struct { unsigned char b[32]; } ds_digest;

typedef struct ds_sha256 ds_sha256;
ds_sha256 *ds_sha256_new(void);
void ds_sha256_update(ds_sha256 *h, const void *p, size_t n);
void ds_sha256_final(ds_sha256 *h, ds_digest *out); /* frees h */
void ds_sha256_buf(const void *p, size_t n, ds_digest *out);
/* 64 hex chars + NUL */
void ds_digest_hex(const ds_digest *d, char out[65]);
int ds_digest_parse(const char *hex, ds_digest *d);

/* Digest of one entry as described above (data: numel elements of t->dtype,
 * host little-endian). */
void ds_entry_digest(const ds_tinfo *t, const void *data, ds_digest *out);

typedef struct {
    char name[DS_NAME_MAX];
    ds_digest digest;
} ds_named_digest;

/* Streaming form of ds_entry_digest: the header (name, dtype, ndim, dims)
 * is hashed here; add the data with ds_sha256_update, in order, and finish
 * with ds_sha256_final. */
ds_sha256 *ds_entry_digest_begin(const ds_tinfo *t);

/* Hashing overlapped with the caller's I/O: each update waits for the
 * previous one, then hashes [p, p+n) on a background thread and returns at
 * once; p must stay unchanged until the next update or the end. _end waits
 * and gives h back (to ds_sha256_final). */
typedef struct ds_sha256_async ds_sha256_async;
ds_sha256_async *ds_sha256_async_new(ds_sha256 *h);
void ds_sha256_async_update(ds_sha256_async *a, const void *p, size_t n);
ds_sha256 *ds_sha256_async_end(ds_sha256_async *a);

/* Verification on read (docs/robustness.md "Verification on read"): on by
 * default; a job's --no-verify turns it off for the whole process.
 * ds_verify_init sets it and, when off, prints one line on stderr from
 * rank 0 saying so. */
void ds_verify_init(const ds_ctx *ctx, int no_verify);
int ds_verify_enabled(void);

/* Same as ds_content_hash, and *all (sorted by name, *n_all entries; free)
 * receives every rank's digests. */
int ds_content_hash_all(const ds_ctx *ctx, int n_local, const ds_named_digest *local, ds_digest *out,
                        ds_named_digest **all, int *n_all);

/* Collective: each rank passes the entries it hashed (a name may appear on
 * one rank only); returns the content hash, identical on every rank. */
int ds_content_hash(const ds_ctx *ctx, int n_local, const ds_named_digest *local, ds_digest *out);
/* Collective: a file read without per-tensor digests checked against its
 * recorded content_sha256 (RECORDED, hex): RC is this rank's error while
 * computing its N_LOCAL digests LOCAL; the content hash of all ranks' digests
 * must equal RECORDED. 0, RC (or DS_EXIT_INPUT where another rank failed),
 * or DS_EXIT_INPUT "PATH: the tensors do not match the recorded
 * content_sha256 ...". */
int ds_content_hash_verify(const ds_ctx *ctx, const char *path, int rc, int n_local, const ds_named_digest *local,
                           const char *recorded);
#endif
