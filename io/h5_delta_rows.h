/* A delta file (io/h5_delta.h) read by one rank in ranges of rows, for jobs
 * that stream many deltas through bounded memory (aggregate), plus what the
 * trust filter and `sign` need: the content hash recomputed from the data,
 * the signature attributes, and a serial read-write open for adding root
 * attributes to a finished file.
 *
 * A tensor's "rows" are its first dimension: rows of the packed signs of a
 * coded tensor, rows of a dense delta (a 1-D tensor has one element per row,
 * a 0-D tensor one row). The layout (ds_delta_entry) comes from ds_delta_open,
 * which has checked the datasets' types and shapes. Serial HDF5: no MPI
 * collective calls, errors as io/h5.h (nothing printed). */
#ifndef DS_IO_H5_DELTA_ROWS_H
#define DS_IO_H5_DELTA_ROWS_H
#include <hdf5.h>
#include "src/bitdelta.h"
#include "src/sign.h"

typedef struct ds_delta_rows ds_delta_rows;

int ds_delta_rows_open(const char *path, ds_delta_rows **out);
void ds_delta_rows_close(ds_delta_rows *r);
/* Rows [row0, row0 + nrows) of e's packed signs (words_per_row words each). */
int ds_delta_rows_signs(ds_delta_rows *r, const ds_delta_entry *e, int64_t row0, int64_t nrows, uint64_t *bits);
/* Scales [i0, i0 + n) of e. */
int ds_delta_rows_scales(ds_delta_rows *r, const ds_delta_entry *e, int64_t i0, int64_t n, float *s);
/* Rows of e's dense delta, converted to want (F32, F16, BF16). */
int ds_delta_rows_dense(ds_delta_rows *r, const ds_delta_entry *e, int64_t row0, int64_t nrows, ds_dtype want,
                        void *buf);
/* Deferred verification (aggregate's chunks, io/agg_stream.c): while on,
 * the reads above record what they read instead of digesting it (the dense
 * values converted on read keep a copy of what was stored); the caller
 * keeps the buffers unchanged until ds_delta_rows_digest has digested every
 * recorded read, in order, and returned the first mismatch (0 or
 * DS_EXIT_INPUT with ds_err set). ds_delta_rows_digest may run on another
 * thread while the caller works, as long as the caller makes no read
 * through r until it returns; a read with deferral off while records are
 * pending stops the program (a caller's bug). */
void ds_delta_rows_defer(ds_delta_rows *r, int on);
int ds_delta_rows_digest(ds_delta_rows *r);
/* The content hash (src/hash.h, docs/formats.md) of the n entries, from the
 * data as stored: one tensor in memory at a time. Needs MPI initialised. */
int ds_delta_rows_content_hash(ds_delta_rows *r, int n, const ds_delta_entry *e, char hex[65]);

/* Elements in one row of a dense tensor (the product of the other dims). */
int64_t ds_delta_row_elems(const ds_tinfo *t);
/* Rows of a tensor: coded: rows; dense: shape[0] (1 for 0-D). */
int64_t ds_delta_nrows(const ds_delta_entry *e);

/* ---- signature attributes (docs/aggregate.md "Signing"): root attributes
 * "signature" (128 hex digits) and "signer_public_key" (64 hex digits).
 * *present = 0 when the file has no "signature". */
int ds_delta_sig_read(const char *path, char sig[129], char pk[65], int *present);
/* The trust check of one delta file (aggregate --trusted-keys): its
 * signature attributes judged by ds_sign_judge (src/sign.h) against keys,
 * and when they pass, its content hash recomputed from the data (its n
 * entries e) and compared with the signed c->content_sha256. reason: "" when
 * the file is trusted, else why not (a verdict, not an error). Returns 0, or
 * an error code when the file cannot be read (nothing printed). */
int ds_delta_rows_trust(const char *path, const ds_sign_claim *c, int n, const ds_delta_entry *e,
                        const ds_trusted_key *keys, int nkeys, char *reason, size_t rn);

/* Serial read-write open of an existing HDF5 file, for adding root
 * attributes or small datasets (close with ds_h5_close). */
int ds_h5_open_rw_serial(const char *path, hid_t *file);
/* A 1-D dataset of n fixed-length strings (as long as the longest, NUL
 * terminated; h5py reads bytes) under loc. */
int ds_h5_write_strings(hid_t loc, const char *name, size_t n, const char *const *s);
/* A 1-D float64 dataset of n values under loc. */
int ds_h5_write_doubles(hid_t loc, const char *name, size_t n, const double *v);
#endif
