/* Generic parallel-HDF5 helpers shared by every deltasoup HDF5 format (model
 * checkpoints, BitDelta delta files). They know files, types and attributes,
 * not which rank owns what: callers decide who writes which dataset.
 *
 * Parallel rules (HDF5 "collective calling requirements"):
 * - ds_h5_create / ds_h5_open / ds_h5_close, group and dataset creation,
 *   dataset open/close and every attribute write are collective: all ranks of
 *   the communicator make the same calls, in the same order, with the same
 *   arguments (attribute values included).
 * - Attribute reads and all ds_h5_read_* / ds_h5_write_* calls are
 *   independent: a rank reads or writes only the datasets or rows it owns.
 *
 * Errors: every function returns 0 or a ds_exit code after ds_err() with one
 * line "FILE: OBJECT: what went wrong[: HDF5's innermost reason]". HDF5's own
 * error-stack printing is switched off on first use (ds_h5_quiet). */
#ifndef DS_IO_H5_H
#define DS_IO_H5_H
#include <hdf5.h>
#include <mpi.h>
#include "src/ds.h"

/* Switch off HDF5's automatic error-stack printing (idempotent; every entry
 * point below calls it). */
void ds_h5_quiet(void);
/* HDF5's innermost error message of the current error stack, on one line
 * (empty when the stack is empty); returns buf. */
char *ds_h5_errdetail(char *buf, size_t n);

/* 1 when path exists and starts with an HDF5 signature, else 0 (serial,
 * cheap: reads the superblock signature only). */
int ds_h5_is_hdf5(const char *path);

/* Collective: create (truncate) path with the MPI-IO driver on comm. */
int ds_h5_create(const char *path, MPI_Comm comm, hid_t *file);
/* Collective: open path read-only with the MPI-IO driver on comm. Errors
 * (DS_EXIT_INPUT) tell a missing file, a file that is not HDF5, and a
 * truncated or corrupt HDF5 file apart. */
int ds_h5_open(const char *path, MPI_Comm comm, hid_t *file);
/* Serial open (default driver, read-only): for a quick look from one rank,
 * e.g. reading the format attribute to decide what kind of file it is. */
int ds_h5_open_serial(const char *path, hid_t *file);
/* Collective (for files from ds_h5_create/ds_h5_open): close; reports a
 * failed flush. */
int ds_h5_close(hid_t file);

/* "FILE: /object/path" of any HDF5 object, for messages; returns buf. */
char *ds_h5_where(hid_t obj, char *buf, size_t n);

/* ---- attributes (on a file, group or dataset). Strings are stored as
 * fixed-length NUL-terminated UTF-8 (readable by h5py and h5dump); the getters
 * accept fixed- and variable-length strings. Integers are stored as int64 LE,
 * reals as IEEE float64 LE; getters convert from any integer (int) or any
 * integer or float (double) attribute. Setters replace an existing attribute.
 * Getters of a missing attribute return DS_EXIT_INPUT "FILE: missing
 * attribute NAME". */
int ds_h5_attr_exists(hid_t obj, const char *name);
int ds_h5_attr_set_str(hid_t obj, const char *name, const char *value);
int ds_h5_attr_set_int(hid_t obj, const char *name, int64_t value);
int ds_h5_attr_set_double(hid_t obj, const char *name, double value);
/* A float config value as a float64 attribute: the double of its shortest
 * decimal form (1e-5f is stored as 1e-05, not 9.99999974737875e-06). */
int ds_h5_attr_set_float(hid_t obj, const char *name, float value);
double ds_h5_float_decimal(float value);
int ds_h5_attr_get_str(hid_t obj, const char *name, char *buf, size_t n);
int ds_h5_attr_get_int(hid_t obj, const char *name, int64_t *value);
int ds_h5_attr_get_double(hid_t obj, const char *name, double *value);

/* ---- types. The HDF5 type of a ds_dtype, little-endian: F32/F64 IEEE,
 * F16 IEEE half, BF16 as an IEEE-like float (16 bits: sign 15, exponent 7..14
 * with bias 127, mantissa 0..6) so HDF5's own conversion to float32 (h5py
 * ds.astype('f4'), h5dump) gives the exact values, U64/I32/U8 integers.
 * The id belongs to this module: do not close it. */
hid_t ds_h5_type(ds_dtype t);
/* The ds_dtype of a dataset's stored type; -1 when it is none of the above. */
int ds_h5_dtype_of(hid_t dset, ds_dtype *t);

/* ---- groups and datasets */
int ds_h5_group_create(hid_t loc, const char *name, hid_t *grp); /* collective */
int ds_h5_group_open(hid_t loc, const char *name, hid_t *grp);
/* 1 if loc has a link called name. */
int ds_h5_exists(hid_t loc, const char *name);
/* Names of the links in a group, sorted by strcmp; free with ds_h5_names_free. */
int ds_h5_group_list(hid_t grp, int *n, char ***names);
void ds_h5_names_free(int n, char **names);

/* Collective: create a contiguous dataset of type (from ds_h5_type, or any
 * HDF5 type such as H5T_STD_I64LE), space allocated at once, no fill pass. */
int ds_h5_dataset_create(hid_t loc, const char *name, hid_t type, int ndim, const int64_t *shape,
                         hid_t *dset);
int ds_h5_dataset_open(hid_t loc, const char *name, hid_t *dset);
/* Shape of a dataset (at most DS_MAX_DIMS dimensions, else DS_EXIT_INPUT). */
int ds_h5_dataset_shape(hid_t dset, int *ndim, int64_t shape[DS_MAX_DIMS]);

/* Independent I/O of rows [row0, row0+nrows) along the first dimension (the
 * elements of a 1-D dataset; a 0-D dataset is one row). memtype is the HDF5
 * type of buf; HDF5 converts when it differs from the stored type. Large
 * ranges go in pieces (MPI-IO counts are int). */
int ds_h5_write_rows(hid_t dset, hid_t memtype, int64_t row0, int64_t nrows, const void *buf);
int ds_h5_read_rows(hid_t dset, hid_t memtype, int64_t row0, int64_t nrows, void *buf);

/* Float datasets with deltasoup's own rounding (round to nearest even,
 * kernels/half.h) instead of HDF5's: stored is the dataset's dtype, buf holds
 * nrows rows in dtype have / want (F32, F16, BF16, F64). */
int ds_h5_write_rows_conv(hid_t dset, ds_dtype stored, ds_dtype have, int64_t row0, int64_t nrows,
                          const void *buf);
int ds_h5_read_rows_conv(hid_t dset, ds_dtype stored, ds_dtype want, int64_t row0, int64_t nrows,
                         void *buf);

/* A large I/O buffer of a streaming job (issue 16 "Streaming I/O"): a job
 * allocates its tensor buffers once, sized by the largest tensor it handles
 * (or by a piece), and reuses them for every tensor. Buffers of 2 MiB and
 * more are 2 MiB-aligned and advised as transparent huge pages (madvise
 * MADV_HUGEPAGE): the first touch maps 2 MiB at a time instead of 4 KiB
 * (compress of two 7B layers: 48k -> 4.4k page faults, about half the
 * system time). n bytes (0: 1), uninitialised, never NULL (dies as
 * ds_malloc does); release with free(). */
void *ds_buf_alloc(size_t n);
#endif
