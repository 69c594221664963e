/* deltasoup: common types, errors and logging used by every module. */
#ifndef DS_DS_H
#define DS_DS_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kernels/half.h"

#define DS_NAME_MAX 256
#define DS_MAX_DIMS 4
/* The most elements a tensor read from a file may have (2^40; the largest
 * tensor of a 405B-parameter Llama has about 2^31): a larger dataspace, or
 * one whose element count overflows, is refused as a damaged file. */
#define DS_MAX_NUMEL ((int64_t)1 << 40)

/* Exit codes of the deltasoup program (docs/cli.md). */
enum ds_exit {
    DS_EXIT_OK = 0,
    DS_EXIT_FAIL = 1,         /* the job ran and failed (or a gate did not pass) */
    DS_EXIT_USAGE = 2,        /* bad command line */
    DS_EXIT_INPUT = 3,        /* bad input: missing, truncated, wrong format, mismatch */
    DS_EXIT_OUTPUT = 4,       /* output exists (no --overwrite) or cannot be written */
    DS_EXIT_CHECKPOINTED = 75 /* stopped by a signal after writing a checkpoint (EX_TEMPFAIL) */
};

/* Element types of tensors in files and memory. */
typedef enum {
    DS_DTYPE_F32 = 0,
    DS_DTYPE_F16,
    DS_DTYPE_BF16,
    DS_DTYPE_U64, /* packed sign bits */
    DS_DTYPE_I32,
    DS_DTYPE_U8,
    DS_DTYPE_F64,
    DS_DTYPE_COUNT
} ds_dtype;

size_t ds_dtype_size(ds_dtype t);
/* Safetensors spelling: "F32", "F16", "BF16", "U64", "I32", "U8", "F64". */
const char *ds_dtype_name(ds_dtype t);
/* Returns 0 and sets *t for a known name (case-sensitive), -1 otherwise. */
int ds_dtype_parse(const char *name, ds_dtype *t);

/* A tensor's description: name, element type and shape (row-major). */
typedef struct {
    char name[DS_NAME_MAX];
    ds_dtype dtype;
    int ndim;
    int64_t shape[DS_MAX_DIMS];
} ds_tinfo;

int64_t ds_tinfo_numel(const ds_tinfo *t);
size_t ds_tinfo_bytes(const ds_tinfo *t);
/* 1 when a and b have the same dimensions (names and dtypes aside). */
int ds_tinfo_same_shape(const ds_tinfo *a, const ds_tinfo *b);
/* "[512, 64]" into buf; returns buf. */
char *ds_shape_str(const ds_tinfo *t, char *buf, size_t n);

/* Convert n elements of src (type st) to float32. */
void ds_to_f32(ds_dtype st, const void *src, float *dst, size_t n);
/* Convert n float32 values to dst (type dt; F32/F16/BF16). */
void ds_from_f32(ds_dtype dt, const float *src, void *dst, size_t n);
/* Index of the first non-finite value in a float tensor of type t, or -1. */
int64_t ds_find_nonfinite(ds_dtype t, const void *p, size_t n);

/* RoPE frequency scaling of a config (Hugging Face rope_scaling). */
typedef enum {
    DS_ROPE_NONE = 0, /* inv_freq_i = theta^(-2i/head_dim) */
    DS_ROPE_LINEAR,   /* inv_freq / factor (positions / factor) */
    DS_ROPE_LLAMA3    /* Llama 3.1's rule: low frequencies / factor, high kept, a smooth band between */
} ds_rope_kind;

#define DS_MAX_SPECIAL_IDS 8 /* bos/eos ids a config may list */

/* Llama configuration (the checkpoint's root attributes). The fields after
 * tied_embeddings are zero when a source does not give them: no rope
 * scaling, no bos/eos ids known (files written before them read so). */
typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len;
    float norm_eps, rope_theta;
    int tied_embeddings;
    ds_rope_kind rope_scaling;
    float rope_factor;                     /* linear, llama3 */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_original_max_pos;             /* llama3: original_max_position_embeddings */
    int n_bos, n_eos;                      /* config.json's bos_token_id / eos_token_id (0: not given) */
    int bos_ids[DS_MAX_SPECIAL_IDS], eos_ids[DS_MAX_SPECIAL_IDS];
    int bos_is_list, eos_is_list;          /* given as a JSON list (written back the same way) */
} ds_config;

/* "none", "linear", "llama3". */
const char *ds_rope_kind_name(ds_rope_kind k);

/* Check a config for sane, consistent values; 0 ok, else ds_err set. */
int ds_config_check(const ds_config *c, const char *what);

/* ---- errors: functions return 0 on success or a ds_exit code after
 * recording a one-line message with ds_err(). The job prints it and exits. */
int ds_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ds_errmsg(void);
int ds_errcode(void);
void ds_err_clear(void);

/* Allocation that never returns NULL: aborts the job (MPI_Abort) with the
 * call site on failure. */
void *ds_malloc_(size_t n, const char *file, int line);
void *ds_calloc_(size_t n, size_t sz, const char *file, int line);
void *ds_realloc_(void *p, size_t n, const char *file, int line);
char *ds_strdup_(const char *s, const char *file, int line);
#define ds_malloc(n) ds_malloc_((n), __FILE__, __LINE__)
#define ds_calloc(n, s) ds_calloc_((n), (s), __FILE__, __LINE__)
#define ds_realloc(p, n) ds_realloc_((p), (n), __FILE__, __LINE__)
#define ds_strdup(s) ds_strdup_((s), __FILE__, __LINE__)

/* Fatal error: prints "deltasoup: fatal: file:line: msg" and MPI_Abort()s
 * (exit() when MPI is not initialised) so no rank is left hanging. */
void ds_die_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define ds_die(...) ds_die_(__FILE__, __LINE__, __VA_ARGS__)

/* Wall clock seconds (monotonic). */
double ds_now(void);
/* "1h02m03s" / "4m05s" / "12.3s" */
char *ds_fmt_duration(double s, char *buf, size_t n);
/* Peak resident set size of this process in bytes (getrusage). */
size_t ds_peak_rss(void);

/* Simple glob (fnmatch without flags). */
int ds_glob_match(const char *pattern, const char *s);

/* Parse helpers for options: 0 ok, DS_EXIT_USAGE with ds_err set otherwise. */
int ds_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
int ds_parse_double(const char *opt, const char *s, double lo, double hi, double *out);

/* Read a whole file; NUL-terminated; *len without the NUL. */
int ds_read_file(const char *path, char **data, size_t *len);
int ds_file_exists(const char *path);
/* n bytes at offset off, retried across short transfers and EINTR: 0, or
 * -1 with errno set (0 at end of file, or when a write wrote nothing). */
int ds_pread_all(int fd, void *p, size_t n, uint64_t off);
int ds_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
#endif
