/* SHA-256 through OpenSSL's EVP interface, and the content hash. */
#include "config.h"
#include "src/hash.h"
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct ds_sha256 { EVP_MD_CTX *md; };

ds_sha256 *ds_sha256_new(void)
{
    ds_sha256 *h = ds_malloc(sizeof *h);
    h->md = EVP_MD_CTX_new();
    if (!h->md || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) ds_die("EVP sha256 init failed");
    return h;
}

void ds_sha256_update(ds_sha256 *h, const void *p, size_t n)
{
    if (n && EVP_DigestUpdate(h->md, p, n) != 1) ds_die("EVP sha256 update failed");
}

void ds_sha256_final(ds_sha256 *h, ds_digest *out)
{
    unsigned int len = 32;
    if (EVP_DigestFinal_ex(h->md, out->b, &len) != 1 || len != 32) ds_die("EVP sha256 final failed");
    EVP_MD_CTX_free(h->md);
    free(h);
}

void ds_sha256_buf(const void *p, size_t n, ds_digest *out)
{
    ds_sha256 *h = ds_sha256_new();
    ds_sha256_update(h, p, n);
    ds_sha256_final(h, out);
}

void ds_digest_hex(const ds_digest *d, char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d->b[i] >> 4];
        out[2 * i + 1] = hx[d->b[i] & 15];
    }
    out[64] = 0;
}

int ds_digest_parse(const char *hex, ds_digest *d)
{
    if (strlen(hex) != 64) return -1;
    for (int i = 0; i < 64; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        if (i % 2 == 0) d->b[i / 2] = (unsigned char)(v << 4);
        else d->b[i / 2] |= (unsigned char)v;
    }
    return 0;
}

static void put_le(ds_sha256 *h, uint64_t v, int nbytes)
{
    unsigned char b[8];
    for (int i = 0; i < nbytes; i++) b[i] = (unsigned char)(v >> (8 * i));
    ds_sha256_update(h, b, (size_t)nbytes);
}

ds_sha256 *ds_entry_digest_begin(const ds_tinfo *t)
{
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host assumed");
    ds_sha256 *h = ds_sha256_new();
    ds_sha256_update(h, t->name, strlen(t->name) + 1);
    const char *dn = ds_dtype_name(t->dtype);
    ds_sha256_update(h, dn, strlen(dn) + 1);
    put_le(h, (uint64_t)t->ndim, 4);
    for (int i = 0; i < t->ndim; i++) put_le(h, (uint64_t)t->shape[i], 8);
    return h;
}

void ds_entry_digest(const ds_tinfo *t, const void *data, ds_digest *out)
{
    ds_sha256 *h = ds_entry_digest_begin(t);
    ds_sha256_update(h, data, ds_tinfo_bytes(t));
    ds_sha256_final(h, out);
}

/* One worker thread per ds_sha256_async, started at the first update and
 * kept until _end: a job that hashes a tensor in many small pieces
 * (compress) starts one thread per tensor, not one per piece. */
struct ds_sha256_async {
    ds_sha256 *h;
    const void *p;
    size_t n;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, busy, stop;
};

static void *async_run(void *arg)
{
    ds_sha256_async *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->busy && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        if (!a->busy) break; /* stop, nothing left */
        pthread_mutex_unlock(&a->mu);
        ds_sha256_update(a->h, a->p, a->n);
        pthread_mutex_lock(&a->mu);
        a->busy = 0;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

ds_sha256_async *ds_sha256_async_new(ds_sha256 *h)
{
    ds_sha256_async *a = ds_calloc(1, sizeof *a);
    a->h = h;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    return a;
}

/* Wait until the worker has hashed the last piece (mutex held). */
static void async_wait(ds_sha256_async *a)
{
    while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
}

void ds_sha256_async_update(ds_sha256_async *a, const void *p, size_t n)
{
    if (!a->started) {
        if (pthread_create(&a->th, NULL, async_run, a) != 0) {
            ds_sha256_update(a->h, p, n); /* no thread: hash here */
            return;
        }
        a->started = 1;
    }
    pthread_mutex_lock(&a->mu);
    async_wait(a);
    a->p = p;
    a->n = n;
    a->busy = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

ds_sha256 *ds_sha256_async_end(ds_sha256_async *a)
{
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        async_wait(a);
        a->stop = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->th, NULL);
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    ds_sha256 *h = a->h;
    free(a);
    return h;
}

static int verify_on = 1;

void ds_verify_init(const ds_ctx *ctx, int no_verify)
{
    verify_on = !no_verify;
    if (no_verify && ctx->rank == 0)
        fprintf(stderr, "%s: --no-verify: tensors are read without checking their recorded digests\n", ctx->job);
}

int ds_verify_enabled(void) { return verify_on; }

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const ds_named_digest *)a)->name, ((const ds_named_digest *)b)->name);
}

int ds_content_hash(const ds_ctx *ctx, int n_local, const ds_named_digest *local, ds_digest *out)
{
    return ds_content_hash_all(ctx, n_local, local, out, NULL, NULL);
}

int ds_content_hash_all(const ds_ctx *ctx, int n_local, const ds_named_digest *local, ds_digest *out,
                        ds_named_digest **all_out, int *n_all)
{
    int *counts = ds_malloc(sizeof(int) * (size_t)ctx->size), *displs = ds_malloc(sizeof(int) * (size_t)ctx->size);
    int nb = n_local * (int)sizeof(ds_named_digest);
    MPI_Allgather(&nb, 1, MPI_INT, counts, 1, MPI_INT, ctx->comm);
    int total = 0;
    for (int r = 0; r < ctx->size; r++) {
        displs[r] = total;
        total += counts[r];
    }
    ds_named_digest *all = ds_malloc((size_t)total);
    MPI_Allgatherv(local, nb, MPI_BYTE, all, counts, displs, MPI_BYTE, ctx->comm);
    int n = total / (int)sizeof(ds_named_digest);
    qsort(all, (size_t)n, sizeof *all, cmp_named);
    int rc = 0;
    for (int i = 1; i < n; i++)
        if (strcmp(all[i - 1].name, all[i].name) == 0) {
            rc = ds_err(DS_EXIT_FAIL, "content hash: entry %s hashed twice", all[i].name);
            break;
        }
    ds_sha256 *h = ds_sha256_new();
    for (int i = 0; i < n; i++) ds_sha256_update(h, all[i].digest.b, 32);
    ds_sha256_final(h, out);
    if (all_out) {
        *all_out = all;
        *n_all = n;
    } else {
        free(all);
    }
    free(counts);
    free(displs);
    return rc;
}

int ds_content_hash_verify(const ds_ctx *ctx, const char *path, int rc, int n_local, const ds_named_digest *local,
                           const char *recorded)
{
    if (ds_ctx_any_failed(ctx, rc)) return rc ? rc : DS_EXIT_INPUT;
    ds_digest d, want;
    ds_content_hash(ctx, n_local, local, &d);
    if (ds_digest_parse(recorded, &want) != 0 || memcmp(d.b, want.b, 32) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: the tensors do not match the recorded content_sha256 (damaged or altered "
                      "file; --no-verify skips this check)", path);
    return 0;
}
