/* A delta file on weights already in memory (io/delta_apply.c). */
#ifndef DS_IO_DELTA_APPLY_H
#define DS_IO_DELTA_APPLY_H
#include "io/h5_delta.h"
#include "src/bitdelta.h"
#include "src/ctx.h"

/* ---- a delta on weights already in memory (generate, eval: --delta). */
/* Read entry k of the open delta d and add it in place to w (its shape,
 * dtype dt): W = round_dt(W + g(2b - 1)) through apply(dev, ...) for a coded
 * entry (apply NULL: ds_bitpack_apply on the CPU), W = round_dt(W + dense)
 * on the CPU otherwise. 0 or the read's ds_exit code. */
int ds_delta_add_entry(ds_delta_file *d, int k, ds_dtype dt, void *w, ds_delta_apply_fn apply, void *dev);
/* Add every tensor of the open delta d to the weights w[i] described by
 * tinfo[i] (n tensors, e.g. a ds_llama's tinfo / p), each in its dtype
 * tinfo[i].dtype (F32, F16 or BF16) with ds_delta_add_entry: W =
 * round_dt(W + g(2b - 1)) for coded tensors, round_dt(W + dense delta)
 * otherwise -- in a tensor's stored dtype, exactly what `apply` writes, and
 * no f32 copy of the weights is made. Every delta tensor must be there with
 * the same shape, and the sum finite (DS_EXIT_INPUT naming the file and
 * tensor). Independent: each rank adds to its own copy. */
int ds_delta_apply_weights(ds_delta_file *d, int n, const ds_tinfo *tinfo, void *const *w);
/* The whole --delta step of generate / eval, collective: after the base
 * (base_path, config cfg) was loaded into weights w (dtypes in tinfo), open delta_path,
 * check it was made for this base (ds_delta_check_base against the
 * base's recorded content hash; force: warn only) and for its config, and
 * add it with ds_delta_apply_weights. Every rank adds to its own copy.
 * Returns the agreed status; a failure was printed once. */
int ds_delta_apply_to_model(const ds_ctx *ctx, const char *delta_path, const char *base_path, int force,
                               const ds_config *cfg, int n, const ds_tinfo *tinfo, void *const *w);
#endif
