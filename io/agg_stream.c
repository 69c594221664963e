/* Chunks of rows of many delta files, all-gathered (io/agg_stream.h). */
#include "config.h"
#include <pthread.h>
#include "io/agg_stream.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/aggregate.h"
#include "src/bitdelta.h"
#include "src/hash.h"
#include "src/robust.h"
#include "src/shard.h"
#include <sys/mman.h>

/* A large buffer on 2 MiB boundaries with transparent huge pages asked for
 * (advisory): fewer first-touch faults, and the math reads 64 users' rows
 * at once, far apart, with fewer TLB misses. free() releases it. */
static void *big_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge) return ds_malloc(bytes + 1);
    void *p = NULL;
    const size_t len = (bytes + huge - 1) / huge * huge;
    if (posix_memalign(&p, huge, len) != 0) return ds_malloc(bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    return p;
}

/* Bytes of one row of e in a chunk: packed signs (+ its scale when per row),
 * or float32 values. */
static size_t row_bytes(const ds_delta_entry *e)
{
    if (e->coded) return (size_t)e->words_per_row * 8 + (e->mode == DS_SCALE_ROW ? 4 : 0);
    return (size_t)ds_delta_row_elems(&e->t) * 4;
}

static int64_t rows_for(const ds_agg_stream *s, const ds_delta_entry *e, size_t budget)
{
    int64_t n = ds_delta_nrows(e), r = (int64_t)(budget / ((size_t)s->np * row_bytes(e)));
    return r < 1 ? 1 : r > n ? n : r;
}

int64_t ds_agg_stream_rows(const ds_agg_stream *s, const ds_delta_entry *e) { return rows_for(s, e, s->budget); }

/* The output pass's chunks: per-coordinate results (and integer kept
 * counts) do not depend on chunk boundaries, so its chunks are at most
 * DS_AGG_OUT_MB MiB per rank: a chunk just read is still in cache when the
 * math reads it. Krum's distance pass keeps --chunk-mb (its sums follow the
 * chunks). */
#define DS_AGG_OUT_MB 16
static int64_t out_rows(const ds_agg_stream *s, const ds_delta_entry *e)
{
    const size_t cap = ((size_t)DS_AGG_OUT_MB << 20) * (size_t)s->ctx->size;
    return rows_for(s, e, s->budget < cap ? s->budget : cap);
}

size_t ds_agg_chunk_scales(const ds_delta_entry *e, int64_t rows)
{
    return e->mode == DS_SCALE_ROW ? (size_t)rows : e->mode == DS_SCALE_COL ? (size_t)e->cols : 1;
}

/* One participant's share of a chunk: its signs then scales (8-byte
 * aligned), or its float32 values. */
static size_t slot_bytes(const ds_delta_entry *e, int64_t rows)
{
    if (!e->coded) return (size_t)rows * (size_t)ds_delta_row_elems(&e->t) * 4;
    size_t b = (size_t)rows * (size_t)e->words_per_row * 8 + ds_agg_chunk_scales(e, rows) * 4;
    return (b + 7) & ~(size_t)7;
}

/* ---- verification beside the work: the readers' deferred digests
 * (ds_delta_rows_defer) of the chunk just read run on a second thread
 * while the caller reduces the chunk; settle() waits for them before the
 * buffers are read into again and at the end of each pass, and raises
 * their first mismatch. */
typedef struct {
    pthread_t th;
    int running, rc;
    char msg[1024];
    ds_agg_stream *s;
} digest_state;

static void *digest_run(void *arg)
{
    digest_state *g = arg;
    const ds_agg_stream *s = g->s;
    for (int64_t p = s->lo; p < s->hi && !g->rc; p++)
        if ((g->rc = ds_delta_rows_digest(s->rd[p - s->lo]))) snprintf(g->msg, sizeof g->msg, "%s", ds_errmsg());
    return NULL;
}

/* Below this many bytes read, a chunk is digested at once on this thread:
 * starting a thread would cost more than it saves (tiny --chunk-mb). */
#define DIGEST_THREAD_MIN ((size_t)1 << 20)

/* Start digesting what read_local recorded, bytes in all (on this thread
 * for a small chunk, or when no second thread can be started). */
static void digest_start(ds_agg_stream *s, size_t bytes)
{
    digest_state *g = s->digest;
    if (!g) return;
    g->rc = 0;
    g->running = bytes >= DIGEST_THREAD_MIN && pthread_create(&g->th, NULL, digest_run, g) == 0;
    if (!g->running) digest_run(g);
}

/* Wait for the digests in flight: 0, or their mismatch (ds_err set). */
static int settle(ds_agg_stream *s)
{
    digest_state *g = s->digest;
    if (!g) return 0;
    if (g->running) pthread_join(g->th, NULL);
    g->running = 0;
    const int rc = g->rc;
    g->rc = 0;
    return rc ? ds_err(rc, "%s", g->msg) : 0;
}

int ds_agg_stream_settle(ds_agg_stream *s) { return settle(s); }

int ds_agg_stream_init(ds_agg_stream *s, const ds_ctx *ctx, ds_comm *comm, int np, const char *const *paths,
                       const ds_delta_meta *layout, double chunk_mb)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->comm = comm;
    s->np = np;
    s->paths = paths;
    s->budget = (size_t)(chunk_mb * (1 << 20));
    ds_shard_range(np, ctx->rank, ctx->size, &s->lo, &s->hi);
    s->maxloc = (np + ctx->size - 1) / ctx->size;
    for (int i = 0; i < layout->n; i++) {
        size_t b = slot_bytes(&layout->entries[i], ds_agg_stream_rows(s, &layout->entries[i]));
        if (b > s->slot_cap) s->slot_cap = b;
    }
    /* One rank: the chunk is read where the math reads it (no gather copy). */
    s->recv = big_alloc(s->slot_cap * (size_t)s->maxloc * (size_t)ctx->size);
    s->send = ctx->size == 1 ? s->recv : big_alloc(s->slot_cap * (size_t)s->maxloc);
    s->bits = ds_malloc(sizeof(void *) * (size_t)np);
    s->scale = ds_malloc(sizeof(void *) * (size_t)np);
    s->dense = ds_malloc(sizeof(void *) * (size_t)np);
    s->rd = ds_calloc((size_t)(s->hi - s->lo + 1), sizeof(ds_delta_rows *));
    int rc = 0;
    for (int64_t p = s->lo; p < s->hi && !rc; p++) rc = ds_delta_rows_open(paths[p], &s->rd[p - s->lo]);
    if (ds_verify_enabled()) {
        digest_state *g = ds_calloc(1, sizeof *g);
        g->s = s;
        s->digest = g;
    }
    return ds_ctx_agree(ctx, rc);
}

void ds_agg_stream_free(ds_agg_stream *s)
{
    (void)settle(s); /* a mismatch was raised by the pass, or no longer matters */
    free(s->digest);
    if (s->rd)
        for (int64_t p = s->lo; p < s->hi; p++) ds_delta_rows_close(s->rd[p - s->lo]);
    free(s->rd);
    if (s->send != s->recv) free(s->send);
    free(s->recv);
    free(s->bits);
    free(s->scale);
    free(s->dense);
    memset(s, 0, sizeof *s);
}

static int check_finite(const char *path, const ds_delta_entry *e, const float *v, size_t n, const char *what)
{
    int64_t bad = ds_find_nonfinite(DS_DTYPE_F32, v, n);
    if (bad >= 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %s value %lld is not finite (%g)", path, e->t.name, what, (long long)bad,
                      (double)v[bad]);
    return 0;
}

/* This rank's participants' rows of the chunk into s->send, slot by slot. */
static int read_local(ds_agg_stream *s, const ds_delta_entry *e, int64_t r0, int64_t nr, size_t slot)
{
    int rc = settle(s); /* the last chunk's digests, before its buffers are reused */
    for (int64_t p = s->lo; p < s->hi && !rc; p++) {
        unsigned char *dst = s->send + (size_t)(p - s->lo) * slot;
        ds_delta_rows *r = s->rd[p - s->lo];
        ds_delta_rows_defer(r, s->digest != NULL);
        const char *path = s->paths[p];
        if (e->coded) {
            float *sc = (float *)(dst + (size_t)nr * (size_t)e->words_per_row * 8);
            const size_t ns = ds_agg_chunk_scales(e, nr);
            rc = ds_delta_rows_signs(r, e, r0, nr, (uint64_t *)dst);
            if (!rc) rc = ds_delta_rows_scales(r, e, e->mode == DS_SCALE_ROW ? r0 : 0, (int64_t)ns, sc);
            if (!rc) rc = check_finite(path, e, sc, ns, "scale");
        } else {
            rc = ds_delta_rows_dense(r, e, r0, nr, DS_DTYPE_F32, dst);
            if (!rc) rc = check_finite(path, e, (const float *)dst, (size_t)nr * (size_t)ds_delta_row_elems(&e->t), "delta");
        }
        ds_delta_rows_defer(r, 0);
    }
    if (!rc) digest_start(s, slot * (size_t)(s->hi - s->lo));
    return rc;
}

int ds_agg_stream_chunk(ds_agg_stream *s, const ds_delta_entry *e, int64_t r0, int64_t nr, int *local)
{
    const size_t slot = slot_bytes(e, nr);
    *local = read_local(s, e, r0, nr, slot);
    if (ds_ctx_any_failed(s->ctx, *local)) return 1;
    s->row0 = 0;
    if (s->send != s->recv) ds_comm_allgather(s->comm, s->send, s->recv, slot * (size_t)s->maxloc);
    for (int r = 0; r < s->ctx->size; r++) {
        int64_t a, b;
        ds_shard_range(s->np, r, s->ctx->size, &a, &b);
        for (int64_t p = a; p < b; p++) {
            const unsigned char *src = s->recv + ((size_t)r * (size_t)s->maxloc + (size_t)(p - a)) * slot;
            s->bits[p] = (const uint64_t *)src;
            s->dense[p] = (const float *)src;
            s->scale[p] = (const float *)(src + (size_t)nr * (size_t)e->words_per_row * 8);
        }
    }
    return 0;
}

int ds_agg_stream_copy(ds_agg_stream *s, const ds_delta_meta *layout, int p, ds_delta_file *out)
{
    int rc = settle(s);
    if (rc || p < s->lo || p >= s->hi) return rc;
    ds_delta_rows *r = s->rd[p - s->lo];
    for (int i = 0; i < layout->n && !rc; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        if (e->coded) {
            uint64_t *b = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row));
            float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales);
            rc = ds_delta_rows_signs(r, e, 0, e->rows, b);
            if (!rc) rc = ds_delta_rows_scales(r, e, 0, e->n_scales, sc);
            if (!rc) rc = ds_delta_write_signs(out, i, b);
            if (!rc) rc = ds_delta_write_scales(out, i, sc);
            free(b);
            free(sc);
        } else {
            void *buf = ds_malloc(ds_tinfo_bytes(&e->t) + 1);
            rc = ds_delta_rows_dense(r, e, 0, ds_delta_nrows(e), e->t.dtype, buf);
            if (!rc) rc = ds_delta_write_dense(out, i, buf);
            free(buf);
        }
    }
    return rc;
}

int ds_agg_staged_digests(const ds_ctx *ctx, const char *path, const ds_delta_entry *e, int n, unsigned char *dig)
{
    memset(dig, 0, (size_t)n * 32);
    int rc = 0;
    if (ctx->rank < n) {
        ds_delta_rows *r = NULL;
        rc = ds_delta_rows_open(path, &r);
        for (int i = ctx->rank; i < n && !rc; i += ctx->size) {
            char hex[65];
            rc = ds_delta_rows_content_hash(r, 1, &e[i], hex);
            for (int b = 0; b < 32 && !rc; b++) sscanf(hex + 2 * b, "%2hhx", &dig[(size_t)i * 32 + (size_t)b]);
        }
        ds_delta_rows_close(r);
    }
    /* each digest is non-zero on one rank only */
    MPI_Allreduce(MPI_IN_PLACE, dig, n * 32, MPI_UNSIGNED_CHAR, MPI_BOR, ctx->comm);
    return ds_ctx_agree(ctx, rc);
}

/* Collective, the output pass with MPI at 2+ ranks: like
 * ds_agg_stream_chunk, but each rank receives only the rows it reduces
 * (ds_shard_range of the chunk) of every participant: an all-to-all of
 * about 1/size of the all-gather's bytes. Participants' files stay read
 * whole by their rank (verification on read sees every row in order).
 * pack: size x block bytes. */
static size_t scatter_block(const ds_agg_stream *s, const ds_delta_entry *e, int64_t nr)
{
    return slot_bytes(e, (nr + s->ctx->size - 1) / s->ctx->size) * (size_t)s->maxloc;
}

static int chunk_scatter(ds_agg_stream *s, const ds_delta_entry *e, int64_t r0, int64_t nr, int *local,
                         unsigned char *pack)
{
    const int size = s->ctx->size;
    const size_t slot = slot_bytes(e, nr), block = scatter_block(s, e, nr);
    const size_t rowb = e->coded ? (size_t)e->words_per_row * 8 : (size_t)ds_delta_row_elems(&e->t) * 4;
    *local = read_local(s, e, r0, nr, slot);
    if (ds_ctx_any_failed(s->ctx, *local)) return 1;
    for (int d = 0; d < size; d++) {
        int64_t a, b;
        ds_shard_range(nr, d, size, &a, &b);
        const size_t sub = slot_bytes(e, b - a);
        for (int64_t p = s->lo; p < s->hi; p++) {
            const unsigned char *src = s->send + (size_t)(p - s->lo) * slot;
            unsigned char *dst = pack + (size_t)d * block + (size_t)(p - s->lo) * sub;
            memcpy(dst, src + (size_t)a * rowb, (size_t)(b - a) * rowb);
            if (!e->coded) continue;
            const float *sc = (const float *)(src + (size_t)nr * rowb);
            const size_t ns = ds_agg_chunk_scales(e, b - a);
            memcpy(dst + (size_t)(b - a) * rowb, sc + (e->mode == DS_SCALE_ROW ? (size_t)a : 0), ns * 4);
        }
    }
    MPI_Alltoall(pack, (int)block, MPI_BYTE, s->recv, (int)block, MPI_BYTE, s->ctx->comm);
    int64_t a, b;
    ds_shard_range(nr, s->ctx->rank, size, &a, &b);
    const size_t sub = slot_bytes(e, b - a);
    for (int r = 0; r < size; r++) {
        int64_t pa, pb;
        ds_shard_range(s->np, r, size, &pa, &pb);
        for (int64_t p = pa; p < pb; p++) {
            const unsigned char *src = s->recv + (size_t)r * block + (size_t)(p - pa) * sub;
            s->bits[p] = (const uint64_t *)src;
            s->dense[p] = (const float *)src;
            s->scale[p] = (const float *)(src + (size_t)(b - a) * rowb);
        }
    }
    s->row0 = a;
    return 0;
}

/* ---- the passes */
static int dist_pass(ds_agg_stream *s, const ds_delta_meta *layout, int start, double *d, double *norm2,
                     ds_agg_stop_fn stop, void *arg);

int ds_agg_stream_distances(ds_agg_stream *s, const ds_delta_meta *layout, int start, double *d, ds_agg_stop_fn stop,
                            void *arg)
{
    return dist_pass(s, layout, start, d, NULL, stop, arg);
}

int ds_agg_stream_gram(ds_agg_stream *s, const ds_delta_meta *layout, double *d, double *norm2)
{
    return dist_pass(s, layout, 0, d, norm2, NULL, NULL);
}

static int dist_pass(ds_agg_stream *s, const ds_delta_meta *layout, int start, double *d, double *norm2,
                     ds_agg_stop_fn stop, void *arg)
{
    const int np = s->np;
    ds_progress pr;
    ds_progress_init(&pr, s->ctx, "distances", layout->n);
    int rc = 0, stopped = 0;
    for (int i = start; i < layout->n && !rc; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const int64_t nrows = ds_delta_nrows(e), R = ds_agg_stream_rows(s, e);
        for (int64_t r0 = 0; r0 < nrows && !rc; r0 += R) {
            const int64_t nr = nrows - r0 < R ? nrows - r0 : R;
            int local;
            if (ds_agg_stream_chunk(s, e, r0, nr, &local)) {
                rc = ds_ctx_agree(s->ctx, local);
                break;
            }
            if (e->coded) {
                ds_agg_bits c = {(size_t)np, (size_t)nr, (size_t)e->cols, e->mode, s->bits, s->scale};
                ds_agg_dist_bits(&c, (size_t)s->ctx->rank, (size_t)s->ctx->size, d);
                if (norm2) ds_rob_norms_bits(&c, (size_t)s->ctx->rank, (size_t)s->ctx->size, norm2);
            } else {
                const size_t m = (size_t)nr * (size_t)ds_delta_row_elems(&e->t);
                ds_agg_dist_dense((size_t)np, s->dense, m, (size_t)s->ctx->rank, (size_t)s->ctx->size, d);
                if (norm2) ds_rob_norms_dense((size_t)np, s->dense, m, (size_t)s->ctx->rank, (size_t)s->ctx->size, norm2);
            }
        }
        if (!rc) rc = ds_ctx_agree(s->ctx, settle(s)); /* the tensor verified before a checkpoint */
        ds_progress_step(&pr, i + 1, "%s", e->t.name);
        if (!rc && stop && (stopped = stop(arg, i + 1))) break;
    }
    if (!rc && !stopped) ds_comm_allreduce_sum_f64(s->comm, d, d, (size_t)np * (size_t)np);
    if (!rc && !stopped && norm2) ds_comm_allreduce_sum_f64(s->comm, norm2, norm2, (size_t)np);
    return rc;
}

/* One participant's thresholds of tensor e (TIES). */
static int threshold_one(ds_delta_rows *r, const ds_delta_entry *e, double density, ds_merge_thr *t)
{
    int rc;
    if (e->coded) {
        float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales + 4);
        rc = ds_delta_rows_scales(r, e, 0, e->n_scales, sc);
        const uint64_t each = e->mode == DS_SCALE_ROW ? (uint64_t)e->cols
                              : e->mode == DS_SCALE_COL ? (uint64_t)e->rows
                                                        : (uint64_t)e->rows * (uint64_t)e->cols;
        if (!rc) ds_merge_threshold((size_t)e->n_scales, sc, each, density, t);
        free(sc);
        return rc;
    }
    const size_t n = (size_t)ds_tinfo_numel(&e->t);
    float *v = ds_malloc(sizeof(float) * n + 4);
    rc = ds_delta_rows_dense(r, e, 0, ds_delta_nrows(e), DS_DTYPE_F32, v);
    if (!rc) ds_merge_threshold(n, v, 1, density, t);
    free(v);
    return rc;
}

int ds_agg_stream_thresholds(ds_agg_stream *s, const ds_delta_meta *layout, double density, ds_merge_thr *thr)
{
    const size_t np = (size_t)s->np, all = np * (size_t)layout->n;
    memset(thr, 0, sizeof(ds_merge_thr) * all);
    int rc = settle(s); /* (nothing in flight between passes; reads below are digested on the spot) */
    for (int i = 0; i < layout->n && !rc; i++)
        for (int64_t p = s->lo; p < s->hi && !rc; p++)
            rc = threshold_one(s->rd[p - s->lo], &layout->entries[i], density, &thr[(size_t)i * np + (size_t)p]);
    if ((rc = ds_ctx_agree(s->ctx, rc))) return rc;
    /* each entry is set on one rank, 0 elsewhere: the sum is exact */
    ds_comm_allreduce_sum_f64(s->comm, (const double *)thr, (double *)thr, 2 * all);
    return 0;
}

/* The writer's end of a tensor: store the assembled result (--requantize
 * streams: write_coded). */
static int write_tensor(ds_delta_file *out, int i, const ds_delta_entry *oe, const ds_agg_reduce *h, void *res, float *scales)
{
    if (h->majority && oe->coded) {
        int rc = ds_delta_write_signs(out, i, res);
        return rc ? rc : ds_delta_write_scales(out, i, scales);
    }
    if (oe->t.dtype == DS_DTYPE_F32) return ds_delta_write_dense(out, i, res);
    void *buf = ds_malloc(ds_tinfo_bytes(&oe->t) + 1);
    ds_from_f32(oe->t.dtype, res, buf, (size_t)ds_tinfo_numel(&oe->t));
    int rc = ds_delta_write_dense(out, i, buf);
    free(buf);
    return rc;
}

/* The output pass's buffers, allocated once for the largest tensor and
 * reused (no per-tensor malloc/free of large blocks: fresh pages fault on
 * first touch, and glibc returns large freed blocks to the kernel). */
typedef struct {
    unsigned char *res, *part, *all, *pack; /* pack: chunk_scatter's send buffer (NULL: all-gather) */
    float *scales;
    /* --requantize (a coded output, not majority): the writer codes each
     * chunk as it comes, so res holds one chunk: the tensor's signs, its scales */
    uint64_t *qbits;
    float *qsc;
    const uint64_t **pb;
    const float **ps;
    uint64_t *key;
} pass_bufs;

/* One tensor of the output pass. */
typedef struct {
    const ds_delta_entry *e;
    int idx;             /* the tensor's index in the layout */
    uint64_t *key;       /* merging: each participant's generator key for the tensor */
    int bits_out;        /* majority of a coded tensor: packed bits out, else float32 values */
    int direct;          /* one rank: rows reduced straight into res */
    int writer;          /* the rank that writes the tensor; gathered to it alone with MPI */
    int to_writer;
    size_t orow, maxsub; /* bytes per output row; most rows of a chunk on one rank */
    unsigned char *res;  /* the writer's whole tensor (NULL elsewhere) */
    float *scales;       /* the writer's output scales (bits_out) */
    unsigned char *part, *all;
    const uint64_t **pb;
    const float **ps;
    /* --requantize: res holds the chunk only, coded into qbits as it comes
     * (ds_delta_coder_begin_f32, on the writer) */
    int chunked;
    const ds_delta_entry *oe; /* the output entry */
    ds_delta_coder coder;
    int64_t bad;              /* the first non-finite result's index, or -1 */
    uint64_t *qbits;
    float *qsc;
} tensor_pass;

static size_t out_row_bytes(const ds_delta_entry *e, const ds_agg_reduce *h)
{
    if (h->majority && e->coded) return (size_t)e->words_per_row * 8;
    return (size_t)(e->coded ? e->cols : ds_delta_row_elems(&e->t)) * 4;
}

/* Whether the output entry oe is coded from float results as they come
 * (--requantize of a coded tensor; majority votes the bits instead). */
static int streams_coded(const ds_delta_entry *oe, const ds_agg_reduce *h) { return oe->coded && !h->majority; }

static void bufs_init(pass_bufs *b, const ds_agg_stream *s, const ds_delta_meta *layout, const ds_delta_entry *oes,
                      const int *writer, const ds_agg_reduce *h, int start)
{
    const int size = s->ctx->size;
    size_t res = 1, sub = 1, sc = 1, qw = 1;
    for (int i = start; i < layout->n; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const size_t orow = out_row_bytes(e, h), maxsub = (size_t)((out_rows(s, e) + size - 1) / size);
        const int q = streams_coded(&oes[i], h);
        const size_t rows = q ? (size_t)out_rows(s, e) : (size_t)ds_delta_nrows(e);
        if (writer[i] == s->ctx->rank && orow * rows > res) res = orow * rows;
        if (orow * maxsub > sub) sub = orow * maxsub;
        if (e->coded && (size_t)e->n_scales > sc) sc = (size_t)e->n_scales;
        if (q && writer[i] == s->ctx->rank) {
            const ds_delta_entry *o = &oes[i];
            const size_t w = (size_t)o->rows * (size_t)o->words_per_row;
            qw = w > qw ? w : qw;
            sc = (size_t)o->n_scales > sc ? (size_t)o->n_scales : sc;
        }
    }
    b->res = big_alloc(res);
    b->scales = ds_malloc(sizeof(float) * sc);
    b->qbits = big_alloc(sizeof(uint64_t) * qw);
    b->qsc = ds_malloc(sizeof(float) * sc);
    b->part = size > 1 ? big_alloc(sub) : NULL;
    b->all = size > 1 ? big_alloc(sub * (size_t)size) : NULL;
    b->pb = ds_malloc(sizeof(void *) * (size_t)s->np);
    b->ps = ds_malloc(sizeof(void *) * (size_t)s->np);
    b->key = ds_malloc(sizeof(uint64_t) * (size_t)s->np);
    /* all-to-all of the rows each rank reduces: MPI, 2+ ranks, not majority
     * (whose writer computes the chunk's scales from every row's) */
    b->pack = NULL;
    if (size > 1 && !h->majority && ds_comm_backend_of(s->comm) == DS_COMM_MPI) {
        size_t pk = 1;
        for (int i = start; i < layout->n; i++) {
            const size_t bl = scatter_block(s, &layout->entries[i], out_rows(s, &layout->entries[i]));
            if (bl > pk) pk = bl;
        }
        b->pack = big_alloc(pk * (size_t)size);
    }
}

static void bufs_free(pass_bufs *b)
{
    free(b->res), free(b->scales), free(b->part), free(b->all), free(b->pb), free(b->ps), free(b->pack), free(b->key);
    free(b->qbits), free(b->qsc);
}

static void pass_init(tensor_pass *t, const ds_agg_stream *s, const ds_delta_entry *e, const ds_delta_entry *oe, int mine,
                      const ds_agg_reduce *h, const pass_bufs *b)
{
    const int size = s->ctx->size;
    t->e = e;
    t->bits_out = h->majority && e->coded;
    t->direct = size == 1;
    t->to_writer = b->pack != NULL;
    t->orow = out_row_bytes(e, h);
    t->maxsub = (size_t)((out_rows(s, e) + size - 1) / size);
    t->res = mine ? b->res : NULL;
    t->scales = mine && t->bits_out ? b->scales : NULL;
    t->part = b->part;
    t->all = b->all;
    t->pb = b->pb;
    t->ps = b->ps;
    t->key = b->key;
    t->chunked = streams_coded(oe, h);
    t->oe = oe;
    t->bad = -1;
    t->qbits = b->qbits;
    t->qsc = b->qsc;
    memset(&t->coder, 0, sizeof t->coder);
    if (t->chunked && t->res) ds_delta_coder_begin_f32(&t->coder, oe);
    for (int u = 0; u < s->np && h->merge; u++) t->key[u] = ds_merge_key(e->t.name, (size_t)u);
}

/* One row's values of participant u (1-bit: g (2b - 1)) into v[cols]. */
static void row_values(const ds_agg_stream *s, const ds_delta_entry *e, size_t u, int64_t r, float *v)
{
    const size_t cols = e->coded ? (size_t)e->cols : (size_t)ds_delta_row_elems(&e->t);
    if (!e->coded) {
        memcpy(v, s->dense[u] + (size_t)(r - s->row0) * cols, cols * sizeof(float));
        return;
    }
    const uint64_t *bits = s->bits[u] + (size_t)(r - s->row0) * (size_t)e->words_per_row;
    const float *sc = s->scale[u];
    for (size_t c = 0; c < cols; c++) {
        const float g = sc[e->mode == DS_SCALE_ROW ? (size_t)(r - s->row0) : e->mode == DS_SCALE_COL ? c : 0];
        v[c] = (bits[c / 64] >> (c % 64)) & 1 ? g : -g;
    }
}

/* Bulyan's coordinate step and NNM's mixed deltas: rows [a, b) of the
 * chunk (starting at tensor row r0) one row at a time, from the values. */
static void reduce_values(const ds_agg_stream *s, tensor_pass *t, const ds_agg_reduce *h, int64_t r0, int64_t a,
                          int64_t b, float *dst, uint64_t *kept)
{
    const ds_delta_entry *e = t->e;
    const size_t np = (size_t)s->np, cols = e->coded ? (size_t)e->cols : (size_t)ds_delta_row_elems(&e->t);
    const size_t nv = h->mix ? h->nmix : np;
    float *x = ds_malloc(sizeof(float) * np * cols + 8), *y = h->mix ? ds_malloc(sizeof(float) * nv * cols + 8) : x;
    double *acc = h->mix ? ds_malloc(sizeof(double) * cols + 8) : NULL;
    const float **pv = ds_malloc(sizeof(float *) * nv + 8);
    for (int64_t r = a; r < b; r++) {
        for (size_t u = 0; u < np; u++) row_values(s, e, u, r, x + u * cols);
        for (size_t k = 0; k < nv && h->mix; k++) {
            memset(acc, 0, sizeof(double) * cols);
            for (size_t u = 0; u < np; u++) {
                const double w = h->mix[k * np + u];
                if (w == 0) continue;
                for (size_t c = 0; c < cols; c++) acc[c] += w * (double)x[u * cols + c];
            }
            for (size_t c = 0; c < cols; c++) y[k * cols + c] = (float)acc[c];
        }
        for (size_t k = 0; k < nv; k++) pv[k] = y + k * cols;
        float *o = dst + (size_t)(r - a) * cols;
        uint64_t *kp = h->mix ? NULL : kept;
        if (h->bulyan_beta) ds_rob_bulyan_dense(nv, pv, cols, h->bulyan_beta, o, kp);
        else if (h->merge)
            ds_merge_dense(h->merge, nv, pv, 1, cols, (uint64_t)(r0 + r) * (uint64_t)cols, t->key,
                           h->thr ? h->thr + (size_t)t->idx * np : NULL, o, kp);
        else ds_agg_trimmed_dense(nv, pv, cols, h->k, o, kp);
    }
    free(x), free(acc), free(pv);
    if (h->mix) free(y);
}

/* This rank's range of the chunk's nr rows (in s) reduced into t->part. */
static void reduce_rows(const ds_agg_stream *s, tensor_pass *t, const ds_agg_reduce *h, int64_t r0, int64_t nr,
                        uint64_t *kept)
{
    const ds_delta_entry *e = t->e;
    const size_t np = (size_t)s->np;
    int64_t a, b;
    ds_shard_range(nr, s->ctx->rank, s->ctx->size, &a, &b);
    if (b <= a) return;
    const ds_merge_thr *thr = h->thr ? h->thr + (size_t)t->idx * np : NULL;
    unsigned char *dst = t->direct ? t->res + (size_t)(t->chunked ? 0 : r0) * t->orow : t->part;
    if (h->bulyan_beta || h->mix) {
        reduce_values(s, t, h, r0, a, b, (float *)dst, kept);
        return;
    }
    if (e->coded) {
        for (size_t u = 0; u < np; u++) {
            t->pb[u] = s->bits[u] + (size_t)(a - s->row0) * (size_t)e->words_per_row;
            t->ps[u] = s->scale[u] + (e->mode == DS_SCALE_ROW ? (size_t)(a - s->row0) : 0);
        }
        ds_agg_bits c = {np, (size_t)(b - a), (size_t)e->cols, e->mode, t->pb, t->ps};
        if (h->merge)
            ds_merge_bits(h->merge, &c, (uint64_t)(r0 + a) * (uint64_t)e->cols, t->key, thr, (float *)dst, kept);
        else if (t->bits_out) ds_agg_majority_bits(&c, (uint64_t *)dst, kept);
        else ds_agg_trimmed_bits(&c, h->k, (float *)dst, kept);
    } else {
        const size_t re = (size_t)ds_delta_row_elems(&e->t);
        for (size_t u = 0; u < np; u++) t->ps[u] = s->dense[u] + (size_t)(a - s->row0) * re;
        if (h->merge)
            ds_merge_dense(h->merge, np, t->ps, (size_t)(b - a), re, (uint64_t)(r0 + a) * (uint64_t)re, t->key, thr,
                           (float *)dst, kept);
        else ds_agg_trimmed_dense(np, t->ps, (size_t)(b - a) * re, h->k, (float *)dst, kept);
    }
}

/* --requantize, on the writer: rows [r0, r0 + nr) of the tensor's float
 * results (res) coded against zero as ds_delta_code_f32 codes them; the
 * first non-finite value is kept for write_coded's message. */
static void code_chunk(tensor_pass *t, int64_t r0, int64_t nr)
{
    if (t->bad < 0) t->bad = ds_delta_coder_rows(&t->coder, t->res, NULL, r0, nr, t->qbits);
}

/* --requantize: the writer's coded tensor (BitDelta of the float results
 * against zero), its scales from the rows' sums as ds_delta_code_f32's. */
static int write_coded(ds_delta_file *out, int i, tensor_pass *t)
{
    const ds_delta_entry *oe = t->oe;
    if (t->bad >= 0)
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: aggregated value %lld is not finite", ds_delta_path(out), oe->t.name,
                      (long long)t->bad);
    ds_delta_coder_end(&t->coder, t->qsc);
    int rc = ds_delta_write_signs(out, i, t->qbits);
    return rc ? rc : ds_delta_write_scales(out, i, t->qsc);
}

/* Collective: every rank's reduced rows of the chunk [r0, r0 + nr) to the
 * writer, which places them (and, for majority, the chunk's scales; for
 * --requantize, codes them). */
static void gather_rows(const ds_agg_stream *s, tensor_pass *t, const ds_agg_reduce *h, int64_t r0, int64_t nr)
{
    const ds_delta_entry *e = t->e;
    if (t->to_writer) /* MPI: only the writer needs the rows */
        MPI_Gather(t->part, (int)(t->orow * t->maxsub), MPI_BYTE, t->all, (int)(t->orow * t->maxsub), MPI_BYTE, t->writer,
                   s->ctx->comm);
    else if (!t->direct) ds_comm_allgather(s->comm, t->part, t->all, t->orow * t->maxsub);
    if (!t->res) return;
    for (int r = 0; r < s->ctx->size && !t->direct; r++) {
        int64_t ra, rb;
        ds_shard_range(nr, r, s->ctx->size, &ra, &rb);
        memcpy(t->res + (size_t)((t->chunked ? 0 : r0) + ra) * t->orow, t->all + (size_t)r * t->orow * t->maxsub,
               (size_t)(rb - ra) * t->orow);
    }
    if (t->bits_out && (r0 == 0 || e->mode == DS_SCALE_ROW))
        ds_agg_majority_scales((size_t)s->np, s->scale, ds_agg_chunk_scales(e, nr), h->k_scale,
                               t->scales + (e->mode == DS_SCALE_ROW ? r0 : 0));
    if (t->chunked) code_chunk(t, r0, nr);
}

int ds_agg_stream_reduce(ds_agg_stream *s, const ds_delta_meta *layout, const ds_delta_entry *oes, const int *writer,
                         const ds_agg_reduce *how, ds_delta_file *out, uint64_t *kept, int start, ds_agg_stop_fn stop,
                         void *arg)
{
    const ds_ctx *ctx = s->ctx;
    int rc = 0, end = 0;
    ds_progress pr;
    ds_progress_init(&pr, ctx, "aggregate", layout->n);
    pass_bufs bufs;
    bufs_init(&bufs, s, layout, oes, writer, how, start);
    for (int i = start; i < layout->n && !end; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const int mine = writer[i] == ctx->rank;
        const int64_t nrows = ds_delta_nrows(e), R = out_rows(s, e);
        tensor_pass t;
        pass_init(&t, s, e, &oes[i], mine, how, &bufs);
        t.writer = writer[i];
        t.idx = i;
        for (int64_t r0 = 0; r0 < nrows && !end; r0 += R) {
            const int64_t nr = nrows - r0 < R ? nrows - r0 : R;
            end = bufs.pack ? chunk_scatter(s, e, r0, nr, &rc, bufs.pack) : ds_agg_stream_chunk(s, e, r0, nr, &rc);
            if (end) break;
            reduce_rows(s, &t, how, r0, nr, kept);
            gather_rows(s, &t, how, r0, nr);
        }
        if (!end && mine) rc = t.chunked ? write_coded(out, i, &t) : write_tensor(out, i, &oes[i], how, t.res, t.scales);
        ds_delta_coder_end(&t.coder, NULL); /* (a pass stopped early; after write_coded, nothing left) */
        if (!end) { /* the tensor's last digests, before a checkpoint or the commit */
            const int v = settle(s);
            rc = rc ? rc : v;
            end = ds_ctx_any_failed(ctx, rc);
        }
        ds_progress_step(&pr, i + 1, "%s", e->t.name);
        /* after the last tensor, finishing costs less than stopping */
        if (!end && i + 1 < layout->n && stop && stop(arg, i + 1)) break;
    }
    bufs_free(&bufs);
    return rc;
}
