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
} ds_bd_entry;

/* The tensor-selection options of compress. */
typedef struct {
    const char *const *bits_for; /* globs moved into the 1-bit set (2-D only) */
    int n_bits_for;
    const char *const *dense_for; /* globs moved out of it (applied after bits_for) */
    int n_dense_for;
    ds_scale_kind mode;
} ds_bd_options;

/* Bytes of the stored code of one tensor: signs (rows * words_per_row * 8) +
 * scales (4 each), or the dense delta in its source dtype. */
typedef struct {
    uint64_t full;   /* dense delta of every tensor in its source dtype */
    uint64_t signs;  /* packed sign words actually stored */
    uint64_t scales; /* 4 bytes per scale */
    uint64_t dense;  /* the dense part */
} ds_bd_sizes;

/* The default 1-bit set: 2-D weight matrices of the transformer blocks. */
int ds_bitdelta_default_coded(const ds_tinfo *t);

/* Decide how each of n tensors is stored (out[i] for tensors[i]).
 * A --bits-for glob matching a tensor that is not 2-D, or a glob matching
 * no tensor at all, is a usage error (DS_EXIT_USAGE with ds_err set). */
int ds_bitdelta_plan(int n, const ds_tinfo *tensors, const ds_bd_options *o, ds_bd_entry *out);
/* Fill the coded fields of e for a 2-D tensor e->t with scale mode m. */
void ds_bd_entry_code(ds_bd_entry *e, ds_scale_kind m);

/* Stored bytes of one entry (and its share of s, which is added to). */
uint64_t ds_bd_entry_bytes(const ds_bd_entry *e, ds_bd_sizes *s);
/* Sum over n entries; returns the ratio full / (signs + scales + dense). */
double ds_bitdelta_ratio(int n, const ds_bd_entry *e, ds_bd_sizes *s);

/* Scales from the kernel's sums (kernels/cpu/bitpack.h): mean |delta| over
 * the tensor (row sums added in row order, / numel), a row (/ cols) or a
 * column (/ rows); e->n_scales values into scales. */
void ds_bitdelta_scales(const ds_bd_entry *e, const double *row_abs, const double *col_abs, float *scales);

/* Code one 2-D tensor: signs (rows * words_per_row words) and scales from
 * W_f and W_b (both in e->t.dtype). Returns -1, or the flat index of the
 * first element whose delta is not finite (nothing useful is written then). */
int64_t ds_bitdelta_code(const ds_bd_entry *e, const void *wf, const void *wb, uint64_t *bits, float *scales);

/* Dense delta: out = round_dt(float(wf) - float(wb)) for n elements of dtype
 * dt (out may be wf or wb). Returns -1, or the index of the first
 * non-finite delta. */
int64_t ds_bitdelta_dense(ds_dtype dt, const void *wf, const void *wb, size_t n, void *out);
/* w = round_dt(float(w) + float(d)): add a dense delta (dtype ddt) to n
 * weights of dtype dt in place. */
void ds_bitdelta_add_dense(ds_dtype dt, void *w, ds_dtype ddt, const void *d, size_t n);

/* The one check everyone calls before using a delta on a base: the delta
 * (delta_path, made for delta_base_sha256) must have been made for this base
 * (base_path, whose content hash is base_sha256; "" when it records none).
 * A mismatch is DS_EXIT_INPUT naming both files unless force, which only
 * warns (on stderr, when rank is 0). */
int ds_bitdelta_check_base(const char *delta_path, const char *delta_base_sha256, const char *base_path,
                           const char *base_sha256, int force, int rank);

/* 1 when two configs describe the same tensor shapes (dims, layers, heads,
 * vocabulary, tied head). */
int ds_bitdelta_config_same(const ds_config *a, const ds_config *b);
/* DS_EXIT_INPUT naming both files when a delta's config (dcfg) does not fit
 * the base's (bcfg). */
int ds_bitdelta_check_config(const char *delta_path, const ds_config *dcfg, const char *base_path,
                             const ds_config *bcfg);

/* ---- a delta on weights already in memory (generate, eval: --delta). */
typedef struct ds_delta_file ds_delta_file; /* io/h5_delta.h */
/* How the coded part of an entry is added in place: ds_dev_apply
 * (src/device_ops.h) with its ds_dev passed as dev. */
typedef int (*ds_bd_apply_fn)(void *dev, ds_dtype dt, void *w, const ds_bd_entry *e, const uint64_t *bits,
                              const float *scales);
/* Read entry k of the open delta d and add it in place to w (its shape,
 * dtype dt): W = round_dt(W + g(2b - 1)) through apply(dev, ...) for a coded
 * entry (apply NULL: ds_bitpack_apply on the CPU), W = round_dt(W + dense)
 * on the CPU otherwise. 0 or the read's ds_exit code. */
int ds_bitdelta_add_entry(ds_delta_file *d, int k, ds_dtype dt, void *w, ds_bd_apply_fn apply, void *dev);
/* Add every tensor of the open delta d to the float32 weights w[i] described
 * by tinfo[i] (n tensors, e.g. a ds_llama's tinfo / w): W += g(2b - 1) for
 * coded tensors, W += dense delta otherwise. Every delta tensor must be
 * there with the same shape (DS_EXIT_INPUT naming the file and tensor).
 * Independent: each rank adds to its own copy. */
int ds_bitdelta_apply_f32(ds_delta_file *d, int n, const ds_tinfo *tinfo, float *const *w);
/* The whole --delta step of generate / eval, collective: after the base
 * (base_path, config cfg) was loaded into f32 weights, open delta_path,
 * check it was made for this base (ds_bitdelta_check_base against the
 * base's recorded content hash; force: warn only) and for its config, and
 * add it with ds_bitdelta_apply_f32. Every rank adds to its own copy.
 * Returns the agreed status; a failure was printed once. */
int ds_bitdelta_apply_to_model(const ds_ctx *ctx, const char *delta_path, const char *base_path, int force,
                               const ds_config *cfg, int n, const ds_tinfo *tinfo, float *const *w);

/* The shapes-only config of a named model family ("llama-7b"), for
 * compress --dry-run --shapes; *dt receives its dtype. 0 or DS_EXIT_USAGE. */
int ds_bitdelta_shapes_config(const char *name, ds_config *cfg, ds_dtype *dt);
#endif
