/* BitDelta sign packing: compress (delta, sign bits, sum |delta|) and
 * apply / expand (W + g(2b - 1)), for f32, f16 and bf16 matrices.
 *
 * Bit layout: a row-major rows x cols matrix gives rows x words_per_row
 * little-endian uint64 words, words_per_row = ceil(cols / 64). Element j of
 * a row is bit (j mod 64) of word (j / 64) of that row; the padding bits
 * after the last column of a row are 0. Bit = 1 when delta >= 0, with
 * delta = float(W_f) - float(W_b) computed in float32 (-0.0 >= 0 gives 1,
 * a NaN delta gives 0: callers reject non-finite inputs first).
 *
 * Summation order (part of the contract; every variant gives bit-identical
 * sums): for a row, lane k (k = 0..15) accumulates |delta_j| (converted
 * exactly to double) for j = k, k+16, k+32, ... in increasing j, starting
 * from +0.0; the lanes are then combined as s[k] += s[k+8] (k < 8),
 * s[k] += s[k+4] (k < 4), s[k] += s[k+2] (k < 2), row_abs = s[0] + s[1].
 * Column sums add |delta_ij| to col_abs[j] for rows i in increasing order.
 * A per-tensor mean is (sum of row_abs in row order) / numel.
 *
 * Every kernel has a portable _ref twin; the plain names dispatch to the
 * variant chosen in dispatch.h. No I/O, no allocation, no MPI. */
#ifndef DS_KERNELS_CPU_BITPACK_H
#define DS_KERNELS_CPU_BITPACK_H
#include <stddef.h>
#include <stdint.h>

/* Element types the kernels read and write. The values equal src/ds.h's
 * DS_DTYPE_F32 / DS_DTYPE_F16 / DS_DTYPE_BF16, so a ds_dtype of one of those
 * three converts by a cast. */
typedef enum { DS_KDT_F32 = 0, DS_KDT_F16 = 1, DS_KDT_BF16 = 2 } ds_kdtype;

/* Where the scale(s) g come from: scale[0] for the whole tensor,
 * scale[row] per row, scale[col] per column. */
typedef enum { DS_SCALE_TENSOR = 0, DS_SCALE_ROW = 1, DS_SCALE_COL = 2 } ds_scale_kind;

static inline size_t ds_bitpack_words(size_t cols) { return (cols + 63) / 64; }

/* One pass over W_f and W_b (both of type dt, rows x cols, row-major):
 * writes every word of bits (rows x ds_bitpack_words(cols), padding bits 0),
 * row_abs[i] = sum_j |delta_ij| (may be NULL), and when col_abs is not NULL
 * adds sum_i |delta_ij| to col_abs[j] (the caller zeroes it first; this lets
 * a matrix be compressed in blocks of rows, in order). */
void ds_bitpack_compress(ds_kdtype dt, const void *wf, const void *wb, size_t rows, size_t cols,
                         uint64_t *bits, double *row_abs, double *col_abs);

/* out = convert_out(float(W_b) + g * (2b - 1)), computed in float32 and
 * rounded to nearest even into out_dt (NaN stays NaN, overflow gives Inf),
 * with g from scale as kind says. out may be wb itself (in place) when
 * out_dt == in_dt; otherwise the two must not overlap. */
void ds_bitpack_apply(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb,
                      const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                      const float *scale);

/* dst = g * (2b - 1) in float32: the dense 1-bit delta. */
void ds_bitpack_expand(float *dst, const uint64_t *bits, size_t rows, size_t cols,
                       ds_scale_kind kind, const float *scale);

/* The portable reference versions (the definition of the results above). */
void ds_bitpack_compress_ref(ds_kdtype dt, const void *wf, const void *wb, size_t rows,
                             size_t cols, uint64_t *bits, double *row_abs, double *col_abs);
void ds_bitpack_apply_ref(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb,
                          const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                          const float *scale);
void ds_bitpack_expand_ref(float *dst, const uint64_t *bits, size_t rows, size_t cols,
                           ds_scale_kind kind, const float *scale);
#endif
