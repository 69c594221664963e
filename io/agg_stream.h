/* Chunks of rows of many delta files, all-gathered to every rank: the
 * streaming engine of aggregate (docs/aggregate.md "Distribution and
 * determinism").
 *
 * The np participants' files (paths[p]) go to ranks in contiguous ranges
 * (ds_shard_range); each rank opens its files with ds_delta_rows_open. A
 * tensor goes in chunks of rows: ds_agg_stream_chunk makes every rank read
 * its files' rows of the chunk (packed signs + scales of a coded tensor, or
 * float32 values of a dense one, each checked finite), and one all-gather
 * gives every rank every participant's rows, reachable through s->bits[p],
 * s->scale[p] and s->dense[p] until the next chunk. The rows per chunk
 * (ds_agg_stream_rows) depend on the budget, the tensor's shape and np only,
 * never on the number of ranks, so results built chunk by chunk are the same
 * at any rank count.
 *
 * Collective calls (init, chunk) are made by every rank with the same
 * arguments. Errors: init prints its message once (ds_ctx_agree); chunk
 * returns quietly (see there). */
#ifndef DS_IO_AGG_STREAM_H
#define DS_IO_AGG_STREAM_H
#include <stddef.h>
#include <stdint.h>
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "src/comm.h"
#include "src/ctx.h"
#include "src/merge.h"

typedef struct {
    const ds_ctx *ctx;
    ds_comm *comm;
    int np;                   /* participants */
    const char *const *paths; /* their files (np; kept by the caller) */
    int64_t lo, hi;           /* this rank's participants [lo, hi) */
    int maxloc;               /* most participants on one rank */
    ds_delta_rows **rd;       /* readers of this rank's participants */
    size_t budget, slot_cap;
    unsigned char *send, *recv;
    /* the current chunk: pointers into recv, one per participant */
    const uint64_t **bits;
    const float **scale, **dense;
    int64_t row0; /* first chunk row the pointers hold (non-zero: this rank's rows only) */
    /* verification beside the work: the chunk just read is digested on a
     * second thread while the caller reduces it (settled before the next
     * read and at the end of every pass) */
    void *digest; /* the thread's state (io/agg_stream.c), NULL when not verifying */
} ds_agg_stream;

/* Collective: open this rank's share of the np files; chunk_mb MiB bound
 * one chunk of all participants' rows (layout: the files' common layout). */
int ds_agg_stream_init(ds_agg_stream *s, const ds_ctx *ctx, ds_comm *comm, int np, const char *const *paths,
                       const ds_delta_meta *layout, double chunk_mb);
void ds_agg_stream_free(ds_agg_stream *s);

/* Rows of e per chunk: from the budget and the number of participants only. */
int64_t ds_agg_stream_rows(const ds_agg_stream *s, const ds_delta_entry *e);
/* Scales of a coded entry that cover a chunk of rows rows (1, rows or cols). */
size_t ds_agg_chunk_scales(const ds_delta_entry *e, int64_t rows);

/* Collective: rows [r0, r0 + nr) of entry e of every participant into s.
 * Returns non-zero when any rank failed (then nothing was gathered);
 * *local receives this rank's status, its message not yet printed. */
int ds_agg_stream_chunk(ds_agg_stream *s, const ds_delta_entry *e, int64_t r0, int64_t nr, int *local);

/* Wait for the digests of the last chunk read (verification runs beside
 * the work: see ds_agg_stream.digest): 0, or this rank's mismatch (ds_err
 * set, not printed). A pass built on ds_agg_stream_chunk calls it before
 * trusting its result. */
int ds_agg_stream_settle(ds_agg_stream *s);

/* Participant p's entries as stored (layout) into out (entry i of out for
 * entry i of layout), copied by the rank that reads p's file; the others
 * return 0 at once. This rank's status, not printed. */
int ds_agg_stream_copy(ds_agg_stream *s, const ds_delta_meta *layout, int p, ds_delta_file *out);

/* Collective: the SHA-256 of each of the first n tensors (entries e) of the
 * delta file at path as stored (the content hash of that one tensor, from
 * ds_delta_rows_content_hash), 32 bytes each into dig (n x 32), on every
 * rank; tensor i is read by rank i % size. For a resume to verify the
 * staged partial output of a checkpoint (docs/aggregate.md "Checkpoint and
 * resume"); the file must not be open for writing. Returns the agreed
 * status (printed once). */
int ds_agg_staged_digests(const ds_ctx *ctx, const char *path, const ds_delta_entry *e, int n, unsigned char *dig);


/* ---- the two passes over the tensors (src/aggregate.h does the math).
 * Both start at tensor start (a resumed run) and may end early at a tensor
 * boundary: before tensor next (next > start) every rank calls
 * stop(arg, next), a collective agreement (e.g. on a checkpoint signal);
 * non-zero ends the pass there, and the caller, which knows, saves its
 * state. stop may be NULL. */
typedef int (*ds_agg_stop_fn)(void *arg, int next);

/* Krum's squared distances between the participants: d (np x np, pair p
 * of ds_agg_pair_index added on rank p % size) += every chunk's, tensor by
 * tensor; when the pass was not stopped (stop is also asked after the last
 * tensor), d is then summed over ranks, so every rank holds the same D.
 * Returns the agreed status (printed once). */
int ds_agg_stream_distances(ds_agg_stream *s, const ds_delta_meta *layout, int start, double *d, ds_agg_stop_fn stop,
                            void *arg);

/* Collective: as ds_agg_stream_distances over all tensors (no stop), and
 * norm2[p] = ||x_p||^2 (participant p's sums formed on rank p % size in
 * chunk order, then summed over ranks): with D, the Gram matrix of the
 * robust aggregators (src/robust.h). Returns the agreed status. */
int ds_agg_stream_gram(ds_agg_stream *s, const ds_delta_meta *layout, double *d, double *norm2);

/* How the output pass reduces a coordinate over the participants. */
typedef struct {
    int majority;   /* coded tensors: majority vote of the bits, scales the trimmed mean (k_scale) of |g| */
    size_t k;       /* trimmed mean: values dropped at each end (majority: of dense tensors) */
    size_t k_scale; /* majority: scales dropped at each end */
    const ds_merge *merge;   /* merging methods and weighted sums (src/merge.h), else NULL */
    const ds_merge_thr *thr; /* TIES: tensor i, participant p at thr[i * np + p], else NULL */
    size_t bulyan_beta;      /* > 0: Bulyan's coordinate step (src/robust.h) keeping beta values */
    const double *mix;       /* NNM: the reduced values are those of the nmix deltas y_k = sum_p mix[k * np + p] x_p */
    size_t nmix;             /* (computed per row in double, rounded to float); kept is then not counted */
} ds_agg_reduce;

/* Collective: TIES's trim thresholds (src/merge.h) of every participant's
 * tensors, thr[i * np + p], on every rank: each rank reads its
 * participants' scales (1-bit) or values (dense; one tensor in memory at a
 * time). Returns the agreed status (printed once). */
int ds_agg_stream_thresholds(ds_agg_stream *s, const ds_delta_meta *layout, double density, ds_merge_thr *thr);

/* The output pass: entry i of layout, chunk by chunk, each rank reducing
 * its range of a chunk's rows, gathered to rank writer[i], which writes
 * entry i of out as oes[i] says: packed bits + scales (majority of a coded
 * tensor), a float32 result coded again with ds_delta_code_f32 (a coded
 * oes[i] otherwise: --requantize), or a dense delta in oes[i]'s dtype.
 * kept[p] += this rank's count of coordinates where participant p's value
 * was kept (agreed with the majority bit). stop is not asked after the last
 * tensor. Returns this rank's status, not printed; all ranks stop at the
 * same point when any fails. */
int ds_agg_stream_reduce(ds_agg_stream *s, const ds_delta_meta *layout, const ds_delta_entry *oes, const int *writer,
                         const ds_agg_reduce *how, ds_delta_file *out, uint64_t *kept, int start, ds_agg_stop_fn stop,
                         void *arg);
#endif
