/* HDF5 model checkpoint (docs/formats.md), read and written in parallel.
 *
 * Writing: ds_model_create is collective (every rank passes the same list of
 * tensors: datasets are created collectively), then each rank writes the
 * tensors it owns with ds_model_write_tensor (independent I/O), then
 * ds_model_commit (collective) closes the file and renames NAME.tmp to NAME
 * only when every rank succeeded; ds_model_discard removes it instead.
 *
 * Reading: ds_model_open is collective, every rank gets the config and the
 * tensor list; ds_model_read_tensor is independent (a rank reads only what it
 * needs) and converts to the requested dtype. ds_model_close is collective. */
#ifndef DS_IO_H5_MODEL_H
#define DS_IO_H5_MODEL_H
#include <mpi.h>
#include "src/ds.h"
#include "io/tokenizer.h"

#define DS_MODEL_FORMAT "deltasoup.model"
#define DS_MODEL_FORMAT_VERSION 1

typedef struct ds_model_file ds_model_file;

typedef struct {
    ds_config cfg;
    int n_tensors;
    ds_tinfo *tensors; /* sorted by name */
    int has_tokenizer;
    char content_sha256[65]; /* as recorded in the file ("" if absent) */
} ds_model_meta;

/* Read side */
int ds_model_open(const char *path, MPI_Comm comm, ds_model_file **out);
const ds_model_meta *ds_model_get_meta(const ds_model_file *f);
/* Index in meta->tensors, or -1. */
int ds_model_find(const ds_model_file *f, const char *name);
/* Read a whole tensor converted to dtype want (F32, F16, BF16) into buf. */
int ds_model_read_tensor(ds_model_file *f, const char *name, ds_dtype want, void *buf);
/* Read rows [row0, row0+nrows) of a 2-D (or 1-D: elements) tensor. */
int ds_model_read_rows(ds_model_file *f, const char *name, ds_dtype want, int64_t row0,
                       int64_t nrows, void *buf);
int ds_model_read_tokenizer(ds_model_file *f, ds_tokenizer *tok);
void ds_model_close(ds_model_file *f);

/* Write side. tok may be NULL. overwrite: replace an existing NAME. */
int ds_model_create(const char *path, MPI_Comm comm, const ds_config *cfg, int n,
                    const ds_tinfo *tensors, const ds_tokenizer *tok, int overwrite,
                    ds_model_file **out);
/* data holds the tensor in src dtype (F32/F16/BF16); it is converted to the
 * dataset's dtype when they differ. */
int ds_model_write_tensor(ds_model_file *f, const char *name, ds_dtype src, const void *data);
/* Collective. rc: this rank's status so far. content_sha256: the content
 * hash to record as a root attribute (computed by the caller with
 * ds_content_hash), or NULL. Returns the agreed status. */
int ds_model_commit(ds_model_file *f, int rc, const char *content_sha256);
/* Hugging Face Llama tensor names for a config, in canonical (sorted) order,
 * with shapes; dtype set to dt. Returns the count; *out allocated. */
int ds_model_llama_tensors(const ds_config *cfg, ds_dtype dt, ds_tinfo **out);
#endif
