/* BitDelta: which tensors are coded with 1 bit, what the code costs
 * (the compression ratio), and the reconstruction W' = W_b + g * (2b - 1)
 * (docs/bitdelta.md). The file format lives in io/h5_delta.h, the packing
 * and apply loops in kernels/cpu/bitpack.h. */
#ifndef DS_BITDELTA_H
#define DS_BITDELTA_H
#include <stdint.h>
#include "src/ds.h"

typedef enum { DS_SCALE_TENSOR = 0, DS_SCALE_ROW, DS_SCALE_COL } ds_scale_mode;

/* "tensor", "row", "col" */
const char *ds_scale_mode_name(ds_scale_mode m);
/* 0 and *m set for a known name, -1 otherwise. */
int ds_scale_mode_parse(const char *s, ds_scale_mode *m);

/* How one tensor of a delta is stored. */
typedef struct {
    ds_tinfo t;            /* the tensor: name, source dtype, shape */
    int coded;             /* 1: sign bits + scale(s); 0: dense delta in t.dtype */
    ds_scale_mode mode;    /* coded tensors only */
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
    ds_scale_mode mode;
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
void ds_bd_entry_code(ds_bd_entry *e, ds_scale_mode m);

/* Stored bytes of one entry (and its share of s, which is added to). */
uint64_t ds_bd_entry_bytes(const ds_bd_entry *e, ds_bd_sizes *s);
/* Sum over n entries; returns the ratio full / (signs + scales + dense). */
double ds_bitdelta_ratio(int n, const ds_bd_entry *e, ds_bd_sizes *s);

/* The shapes-only config of a named model family ("llama-7b"), for
 * compress --dry-run --shapes; *dt receives its dtype. 0 or DS_EXIT_USAGE. */
int ds_bitdelta_shapes_config(const char *name, ds_config *cfg, ds_dtype *dt);
#endif
