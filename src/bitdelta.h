/* BitDelta: which tensors are coded with 1 bit, what the code costs
 * (the compression ratio), and the reconstruction W' = W_b + g * (2b - 1)
 * (docs/bitdelta.md). The file format lives in io/h5_delta.h, the packing
 * and apply loops in kernels/cpu/bitpack.h. */
#ifndef DS_BITDELTA_H
#define DS_BITDELTA_H
#include <stdint.h>
#include "kernels/cpu/bitpack.h"
#include "src/ctx.h"
#include "src/ds.h"

/* Scale kinds (ds_scale_kind, kernels/cpu/bitpack.h) by name: "tensor", "row", "col". */
const char *ds_scale_kind_name(ds_scale_kind m);
extern const char *const ds_scale_kind_names[]; /* NULL-terminated, by ds_scale_kind */
/* 0 and *m set for a known name, -1 otherwise. */
int ds_scale_kind_parse(const char *s, ds_scale_kind *m);

/* How one tensor of a delta is stored. */
typedef struct {
    ds_tinfo t;            /* the tensor: name, source dtype, shape */
    int coded;             /* 1: sign bits + scale(s); 0: dense delta in t.dtype */
    ds_scale_kind mode;    /* coded tensors only */
    int64_t rows, cols;    /* coded: the 2-D shape */
    int64_t words_per_row; /* coded: ceil(cols / 64) */
    int64_t n_scales;      /* coded: 1, rows or cols */
} ds_delta_entry;

/* The tensor-selection options of compress. */
typedef struct {
    const char *const *bits_for; /* globs moved into the 1-bit set (2-D only) */
    int n_bits_for;
    const char *const *dense_for; /* globs moved out of it (applied after bits_for) */
    int n_dense_for;
    ds_scale_kind mode;
} ds_delta_options;

/* Bytes of the stored code of one tensor: signs (rows * words_per_row * 8) +
 * scales (4 each), or the dense delta in its source dtype. */
typedef struct {
    uint64_t full;   /* dense delta of every tensor in its source dtype */
    uint64_t signs;  /* packed sign words actually stored */
    uint64_t scales; /* 4 bytes per scale */
    uint64_t dense;  /* the dense part */
} ds_delta_sizes;

/* The default 1-bit set: 2-D weight matrices of the transformer blocks. */
int ds_delta_default_coded(const ds_tinfo *t);

/* Decide how each of n tensors is stored (out[i] for tensors[i]).
 * A --bits-for glob matching a tensor that is not 2-D, or a glob matching
 * no tensor at all, is a usage error (DS_EXIT_USAGE with ds_err set). */
int ds_delta_plan(int n, const ds_tinfo *tensors, const ds_delta_options *o, ds_delta_entry *out);
/* Fill the coded fields of e for a 2-D tensor e->t with scale mode m. */
void ds_delta_entry_code(ds_delta_entry *e, ds_scale_kind m);

/* Stored bytes of one entry (and its share of s, which is added to). */
uint64_t ds_delta_entry_bytes(const ds_delta_entry *e, ds_delta_sizes *s);
/* Sum over n entries; returns the ratio full / (signs + scales + dense). */
double ds_delta_ratio(int n, const ds_delta_entry *e, ds_delta_sizes *s);

/* Scales from the kernel's sums (kernels/cpu/bitpack.h): mean |delta| over
 * the tensor (row sums added in row order, / numel), a row (/ cols) or a
 * column (/ rows); e->n_scales values into scales. */
void ds_delta_scales(const ds_delta_entry *e, const double *row_abs, const double *col_abs, float *scales);

/* Code one 2-D tensor: signs (rows * words_per_row words) and scales from
 * W_f and W_b (both in e->t.dtype). Returns -1, or the flat index of the
 * first element whose delta is not finite (nothing useful is written then). */
int64_t ds_delta_code(const ds_delta_entry *e, const void *wf, const void *wb, uint64_t *bits, float *scales);
/* ds_delta_code in pieces of rows, for a job that codes each piece as it
 * is read (compress): _begin, then ds_delta_coder_rows on every row of the
 * tensor in order (rows [r0, r0 + nr) of W_f and W_b, in e->t.dtype, at wf
 * and wb; their signs go to rows r0.. of bits, the whole tensor's words),
 * then _end (scales may be NULL after a failure: it only frees). Bits and
 * scales equal ds_delta_code's whatever the pieces (the kernel's row sums do
 * not depend on them; column sums are added in row order). _rows returns -1,
 * or the flat index in the tensor of the first non-finite delta of its rows
 * (wf and wb still hold them: the caller names the values). */
typedef struct {
    const ds_delta_entry *e;
    ds_dtype dt;
    float *zero; /* _begin_f32: the row of zeros coded against */
    double *row_abs, *col_abs;
} ds_delta_coder;
void ds_delta_coder_begin(ds_delta_coder *c, const ds_delta_entry *e);
/* The same in pieces for ds_delta_code_f32: float32 values coded against
 * zero (aggregate --requantize of each chunk as it comes); wb is not used
 * (NULL). */
void ds_delta_coder_begin_f32(ds_delta_coder *c, const ds_delta_entry *e);
int64_t ds_delta_coder_rows(ds_delta_coder *c, const void *wf, const void *wb, int64_t r0, int64_t nr, uint64_t *bits);
void ds_delta_coder_end(ds_delta_coder *c, float *scales);
/* The same coding of float32 values x (e->rows x e->cols) taken as the
 * delta itself (against zero; e->t.dtype, the stored source dtype, is not
 * used): aggregate --requantize of a float result. Returns -1, or the flat
 * index of the first non-finite value. */
int64_t ds_delta_code_f32(const ds_delta_entry *e, const float *x, uint64_t *bits, float *scales);

/* Dense delta: out = round_dt(float(wf) - float(wb)) for n elements of dtype
 * dt (out may be wf or wb). Returns -1, or the index of the first
 * non-finite delta. */
int64_t ds_delta_dense(ds_dtype dt, const void *wf, const void *wb, size_t n, void *out);
/* w = round_dt(float(w) + float(d)): add a dense delta (dtype ddt) to n
 * weights of dtype dt in place. */
void ds_delta_add_dense(ds_dtype dt, void *w, ds_dtype ddt, const void *d, size_t n);

/* The one check everyone calls before using a delta on a base: the delta
 * (delta_path, made for delta_base_sha256) must have been made for this base
 * (base_path, whose content hash is base_sha256; "" when it records none).
 * A mismatch is DS_EXIT_INPUT naming both files unless force, which only
 * warns (on stderr, when rank is 0). */
int ds_delta_check_base(const char *delta_path, const char *delta_base_sha256, const char *base_path,
                           const char *base_sha256, int force, int rank);

/* 1 when two configs describe the same tensor shapes (dims, layers, heads,
 * vocabulary, tied head). */
int ds_delta_config_same(const ds_config *a, const ds_config *b);
/* DS_EXIT_INPUT naming both files when a delta's config (dcfg) does not fit
 * the base's (bcfg). */
int ds_delta_check_config(const char *delta_path, const ds_config *dcfg, const char *base_path,
                             const ds_config *bcfg);

/* How the coded part of an entry is added in place: ds_dev_apply
 * (src/device_ops.h) with its ds_dev passed as dev. */
typedef int (*ds_delta_apply_fn)(void *dev, ds_dtype dt, void *w, const ds_delta_entry *e, const uint64_t *bits,
                              const float *scales);

/* The shapes-only config of a named model family ("llama-7b"), for
 * compress --dry-run --shapes; *dt receives its dtype. 0 or DS_EXIT_USAGE. */
int ds_delta_shapes_config(const char *name, ds_config *cfg, ds_dtype *dt);
#endif
