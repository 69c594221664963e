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
 * needs) and converts to the requested dtype. ds_model_close is collective.
 *
 * Errors: every call returns 0 or a ds_exit code with ds_errmsg() set (one
 * line naming the file and the tensor). Collective calls (open, create,
 * content_hash, commit) return the same code on every rank and have already
 * printed the message once (through ds_ctx_agree, like ds_out_finish): the
 * job just returns the code. Independent calls (read/write) print nothing:
 * pass their status on to ds_ctx_agree or ds_model_commit.
 *
 * Reading validates: format and format_version (a newer version is refused),
 * architecture, the config (ds_config_check), and that /tensors holds exactly
 * the Hugging Face Llama tensors of the config with matching shapes and F32,
 * F16 or BF16 data; truncated or corrupt files give one line, not HDF5's
 * error stack. Tensor data in the file is little-endian; the content hash of
 * a checkpoint is over the tensors as stored (src/hash.h), not the tokenizer. */
#ifndef DS_IO_H5_MODEL_H
#define DS_IO_H5_MODEL_H
#include <mpi.h>
#include "src/ds.h"
#include "src/hash.h"
#include "io/tok_files.h"
#include "io/tokenizer.h"

#define DS_MODEL_FORMAT "deltasoup.model"
#define DS_MODEL_FORMAT_VERSION 1

typedef struct ds_model_file ds_model_file;

typedef struct {
    ds_config cfg;
    int n_tensors;
    ds_tinfo *tensors; /* sorted by name */
    int has_tokenizer;
    int tokenizer_hf;        /* /tokenizer holds a Hugging Face tokenizer.json (format "hf") */
    char content_sha256[65]; /* as recorded in the file ("" if absent) */
    int format_version;      /* as recorded (<= DS_MODEL_FORMAT_VERSION) */
} ds_model_meta;

/* 1 when path is an HDF5 file whose root attribute format is
 * DS_MODEL_FORMAT (serial, quiet; for inspect's dispatch). */
int ds_model_is_model(const char *path);

/* Read side */
int ds_model_open(const char *path, MPI_Comm comm, ds_model_file **out);
const ds_model_meta *ds_model_get_meta(const ds_model_file *f);
/* Index in meta->tensors, or -1. */
int ds_model_find(const ds_model_file *f, const char *name);
/* The file's final name (as given to open/create). */
const char *ds_model_path(const ds_model_file *f);
/* Read a whole tensor converted to dtype want (F32, F16, BF16) into buf
 * (conversions round to nearest even, kernels/half.h). Reading in the stored
 * dtype (meta->tensors[i].dtype) gives the exact stored bits. */
int ds_model_read_tensor(ds_model_file *f, const char *name, ds_dtype want, void *buf);
/* ds_model_read_tensor in two halves, for a job that works on the tensor
 * while it is hashed (compress, apply). _begin reads the tensor whole into
 * buf and, where it is to be checked (verification on and a digest
 * recorded) or its digest is wanted and not recorded, starts hashing buf
 * (ds_entry_digest of the stored bytes, src/hash.h) on a background thread;
 * the caller may read buf (not write it) until _end, which waits, checks the
 * digest against the recorded one (exit 3 naming the tensor, the message of
 * ds_model_read_tensor) and gives it (digest may be NULL). With --no-verify a
 * wanted digest is the recorded one (trusted, as the option says) where the
 * file has one: a job that needs the digest of what it read (compress, for
 * base_sha256) hashes it at most once. Reading as another dtype than the
 * stored one is done at once, hashing included. Every _begin must be ended,
 * also after it failed (_end then returns that error); two tensors (of one
 * or two files) may be in flight at once: their hashes then run on two
 * threads. */
typedef struct ds_model_read_job ds_model_read_job;
int ds_model_read_begin(ds_model_file *f, const char *name, ds_dtype want, void *buf, int want_digest,
                        ds_model_read_job **job);
int ds_model_read_end(ds_model_read_job *job, ds_digest *digest);
/* ds_model_read_begin / _end in row pieces, in the stored dtype, for a job
 * that works on each piece while it is still in cache (compress): _begin
 * opens tensor name (rows: its first dimension); _next reads its next nrows
 * rows (in order, each once) into buf and, where the tensor is hashed
 * (as ds_model_read_begin says), hands them to the hashing thread: buf must
 * stay unchanged until the next _next call on this reader has returned, or
 * until _end (so two buffers used in turn suffice). _end waits, checks the
 * digest against the recorded one (exit 3 naming the tensor, as
 * ds_model_read_end), gives it (digest may be NULL) and frees the reader; it
 * returns the first error of _begin or _next, if any. A reader stopped
 * before its last row (the caller's error elsewhere) is neither checked nor
 * gives a digest. Every _begin must be ended, also after it failed. */
typedef struct ds_model_row_reader ds_model_row_reader;
int ds_model_rows_begin(ds_model_file *f, const char *name, int want_digest, ds_model_row_reader **out);
int ds_model_rows_next(ds_model_row_reader *r, int64_t nrows, void *buf);
int ds_model_rows_end(ds_model_row_reader *r, ds_digest *digest);
/* ds_model_read_tensor calling fn(arg, off, n) as each piece of buf (bytes
 * [off, off + n), in dtype want, in order) has been read, while the digest
 * of that piece is computed on a second thread (export writes each piece as
 * it comes); a non-zero return of fn stops the read and is returned. A
 * tensor that fails its check may have been passed to fn in part. */
typedef int (*ds_model_piece_fn)(void *arg, size_t off, size_t n);
int ds_model_read_tensor_pieces(ds_model_file *f, const char *name, ds_dtype want, void *buf, ds_model_piece_fn fn,
                                void *arg);
/* Read rows [row0, row0+nrows) of a 2-D (or 1-D: elements) tensor. */
int ds_model_read_rows(ds_model_file *f, const char *name, ds_dtype want, int64_t row0,
                       int64_t nrows, void *buf);
/* Independent: fill tok (free with ds_tokenizer_free): the llama2.c arrays,
 * or a Hugging Face tokenizer (tok->hf, tok->chat_template as recorded at
 * import) built from the stored tokenizer.json / tokenizer_config.json. */
int ds_model_read_tokenizer(ds_model_file *f, ds_tokenizer *tok);

/* Independent: the stored files of a Hugging Face tokenizer (export);
 * DS_EXIT_INPUT when /tokenizer is absent or holds llama2.c arrays. */
int ds_model_read_tokenizer_files(ds_model_file *f, ds_tok_files *tf);
void ds_model_close(ds_model_file *f);

/* Write side. tensors: exactly ds_model_llama_tensors(cfg) (any order), each
 * with its stored dtype (F32, F16, BF16). tok may be NULL. overwrite: replace
 * an existing NAME (else DS_EXIT_OUTPUT). The data goes to NAME.tmp. A
 * Hugging Face tok (tok->hf) is stored as its files' bytes: it must come from
 * ds_model_tokenizer_from_files or ds_model_read_tokenizer. */
int ds_model_create(const char *path, MPI_Comm comm, const ds_config *cfg, int n,
                    const ds_tinfo *tensors, const ds_tokenizer *tok, int overwrite,
                    ds_model_file **out);
/* data holds the tensor in src dtype (F32/F16/BF16); it is converted to the
 * dataset's dtype when they differ. */
int ds_model_write_tensor(ds_model_file *f, const char *name, ds_dtype src, const void *data);
/* Collective (write side): the content hash of the tensors written so far by
 * all ranks (hex, identical on every rank); fails when a tensor was not
 * written yet. */
int ds_model_content_hash(ds_model_file *f, char hex[65]);
/* Collective. rc: this rank's status so far (not yet printed: commit prints
 * the failing rank's message once). When every rank succeeded and every
 * tensor was written, records content_sha256 (computed from the written data;
 * a non-NULL content_sha256 must equal it), closes and renames NAME.tmp to
 * NAME; otherwise removes NAME.tmp and leaves an existing NAME untouched.
 * Frees f either way. Returns the agreed status. */
int ds_model_commit(ds_model_file *f, int rc, const char *content_sha256);
/* Collective: give up writing without a message; removes NAME.tmp, frees f. */
void ds_model_discard(ds_model_file *f);
/* The open file's HDF5 id (a hid_t), for io/ modules that read or add root
 * attributes the format leaves to them (a DP fine-tune's record,
 * io/dp_record.h). Adding one is collective, between create and commit. */
int64_t ds_model_root(const ds_model_file *f);
/* Hugging Face Llama tensor names for a config, in canonical (sorted) order,
 * with shapes; dtype set to dt. Returns the count; *out allocated. */
int ds_model_llama_tensors(const ds_config *cfg, ds_dtype dt, ds_tinfo **out);
#endif
