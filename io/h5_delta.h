/* BitDelta delta file (*.bd.h5, docs/formats.md "Delta file"), on io/h5.h.
 *
 *   /                    format, format_version, base_sha256, content_sha256,
 *                        owner, scale_fit, [dp_epsilon, dp_delta], the base
 *                        config (dim, hidden_dim, ... as in a checkpoint)
 *   /bits/<tensor>/      group, attributes dtype (source), rows, cols, scale_mode
 *       signs            u64 [rows, ceil(cols/64)]
 *       scale            f32 [1] | [rows] | [cols]
 *   /dense/<tensor>      the dense delta in the source dtype, tensor's shape
 *   /provenance/         an aggregate's contributors (ds_delta_write_provenance)
 *
 * Writing: ds_delta_create is collective (every rank passes the same meta:
 * all groups, datasets and attributes are created collectively, in NAME.tmp),
 * each rank then writes the entries it owns (independent I/O; each write
 * also digests the entry), and ds_delta_commit (collective) checks that every
 * entry was written, records base_sha256 and content_sha256 and renames
 * NAME.tmp to NAME, or removes NAME.tmp when the ranks agreed on a failure.
 *
 * Reading: ds_delta_open is collective and checks the structure (format,
 * version, every tensor's datasets, types and shapes); reads are independent;
 * ds_delta_close is collective.
 *
 * Errors as in io/h5_model.h: collective calls (open, create, commit) return
 * the same code on every rank and have printed the message once (through
 * ds_ctx_agree); independent reads and writes print nothing. */
#ifndef DS_IO_H5_DELTA_H
#define DS_IO_H5_DELTA_H
#include <mpi.h>
#include "src/bitdelta.h"
#include "src/ds.h"

#define DS_DELTA_FORMAT "deltasoup.bitdelta"
#define DS_DELTA_FORMAT_VERSION 1

typedef struct {
    int format_version;      /* as read (DS_DELTA_FORMAT_VERSION when writing) */
    ds_config cfg;           /* the base checkpoint's config */
    char base_sha256[65];    /* content hash of the base checkpoint */
    char content_sha256[65]; /* as recorded ("" while writing) */
    char owner[DS_NAME_MAX];
    char scale_fit[DS_NAME_MAX]; /* "mean_abs", or what fit-scales recorded */
    int has_dp;                  /* dp_epsilon / dp_delta present */
    double dp_epsilon, dp_delta;
    int n;                  /* tensors, sorted by name */
    ds_delta_entry *entries;
} ds_delta_meta;

typedef struct ds_delta_file ds_delta_file;

/* ---- read side */
int ds_delta_open(const char *path, MPI_Comm comm, ds_delta_file **out);
const ds_delta_meta *ds_delta_get_meta(const ds_delta_file *f);
const char *ds_delta_path(const ds_delta_file *f);
/* Index in meta->entries, or -1. */
int ds_delta_find(const ds_delta_file *f, const char *name);
/* Entry i's packed signs (rows * words_per_row words) / scales (n_scales). */
int ds_delta_read_signs(ds_delta_file *f, int i, uint64_t *bits);
int ds_delta_read_scales(ds_delta_file *f, int i, float *scales);
/* Entry i's dense delta converted to want (F32, F16, BF16). */
int ds_delta_read_dense(ds_delta_file *f, int i, ds_dtype want, void *buf);
/* Collective. */
void ds_delta_close(ds_delta_file *f);

/* ---- write side. meta->entries sorted by name; meta->content_sha256 is
 * ignored, meta->base_sha256 may be "" when it is only known at commit.
 * overwrite: replace an existing NAME (else DS_EXIT_OUTPUT). */
int ds_delta_create(const char *path, MPI_Comm comm, const ds_delta_meta *meta, int overwrite,
                    ds_delta_file **out);
/* The open file's HDF5 id (a hid_t), for io/ modules that add root
 * attributes (collectively, between create and commit: io/dp_record.h). */
int64_t ds_delta_root(const ds_delta_file *f);
int ds_delta_write_signs(ds_delta_file *f, int i, const uint64_t *bits);
int ds_delta_write_scales(ds_delta_file *f, int i, const float *scales);
/* data in the entry's source dtype. */
int ds_delta_write_dense(ds_delta_file *f, int i, const void *data);
/* Collective. rc: the status all ranks agreed on (ds_ctx_agree, which
 * printed a failure): nonzero removes NAME.tmp. Else base_sha256 (NULL:
 * meta's) and the content hash are recorded and NAME.tmp renamed to NAME.
 * Frees f; returns the agreed status; *content_sha256 (may be NULL)
 * receives the hash recorded. */
int ds_delta_commit(ds_delta_file *f, int rc, const char *base_sha256, char content_sha256[65]);
/* Collective: ds_delta_commit without the rename: NAME.tmp stays staged,
 * closed and complete (hashes recorded), for the caller to add to (e.g.
 * ds_delta_write_provenance on one rank) and to put in place with
 * ds_out_finish(ctx, NAME, rc) (src/ctx.h), which removes it on failure.
 * Frees f; returns the agreed status; on failure NAME.tmp is removed. */
int ds_delta_commit_staged(ds_delta_file *f, int rc, const char *base_sha256, char content_sha256[65]);

/* ---- provenance of an aggregate (docs/aggregate.md "Weights, scores,
 * provenance"): root attributes aggregate_method, aggregate_params (JSON),
 * aggregate_version_sha256, aggregate_n_inputs, aggregate_n_used, and the
 * group /provenance with one row per input, in input order: owner,
 * content_sha256, status, reason (fixed-length strings), weight,
 * kept_fraction, krum_score (float64). */
typedef struct {
    const char *method, *params, *version_sha256;
    int n, n_used; /* inputs, and those with weight > 0 */
    const char *const *owner, *const *content_sha256, *const *status, *const *reason;
    const double *weight, *kept_fraction, *krum_score;
} ds_delta_provenance;
/* Serial (one rank): add p to the closed delta file at path (the NAME.tmp
 * that ds_delta_commit_staged left). 0 or a ds_exit code (nothing printed). */
int ds_delta_write_provenance(const char *path, const ds_delta_provenance *p);

/* ---- suspend and resume a write (a checkpointed job, docs/aggregate.md
 * "Checkpoint and resume").
 * ds_delta_suspend (collective): close NAME.tmp cleanly, neither committed
 * nor removed; frees f; returns the agreed close status.
 * ds_delta_resume (collective, every rank passes the same arguments): reopen
 * the NAME.tmp that a suspended ds_delta_create left, read-write; check that
 * it holds exactly meta's tensors (names, coding, dtypes, shapes, scale
 * modes); entries [0, n_done) count as written: each is read back and
 * digested by rank writer[i] of comm (any rank count), so that
 * ds_delta_commit works as after ds_delta_create; the others are written
 * as usual. A missing or unreadable NAME.tmp is DS_EXIT_INPUT. */
int ds_delta_suspend(ds_delta_file *f);
int ds_delta_resume(const char *path, MPI_Comm comm, const ds_delta_meta *meta, int n_done, const int *writer,
                    ds_delta_file **out);

/* ---- content hash entries: "<tensor>/signs" (U64 [rows, words]),
 * "<tensor>/scale" (F32 [n_scales]), "<tensor>/dense" (source dtype, shape). */
void ds_delta_entry_info(const ds_delta_entry *e, const char *part, ds_tinfo *out);

/* 1 when path is an HDF5 file whose root attribute format is
 * DS_DELTA_FORMAT (serial; for inspect's dispatch). */
int ds_delta_is_delta(const char *path);

/* Does delta b (read from path p) have the layout of delta a (from p0): the
 * same model config, tensor set in the same order, shapes, dtypes, coding
 * and scale modes? 0, or DS_EXIT_INPUT with one message naming p, the
 * tensor and p0 (a config mismatch: ds_delta_check_config's). The base hashes are the caller's to compare (aggregate
 * has --force, poison has not). */
int ds_delta_same_layout(const char *p0, const ds_delta_meta *a, const char *p, const ds_delta_meta *b);
#endif
