/* The one dispatch point between the jobs and the CPU or CUDA kernels: a job
 * opens a ds_dev from its --device option and calls ds_dev_* per tensor; on
 * cpu these are the CPU kernels the jobs called before, on cuda the rank's
 * tensor is copied to its GPU, the ds_cuda_* twin runs there and the results
 * come back. The GPU kernels give the CPU kernels' bits, sums and rounded
 * values (kernels/cuda/ds_cuda.h), so outputs do not depend on the device. */
#ifndef DS_DEVICE_OPS_H
#define DS_DEVICE_OPS_H
#include <stdint.h>
#include "src/bitdelta.h"
#include "src/ctx.h"
#include "src/device.h"

typedef struct ds_dev ds_dev;

/* Collective: resolve a --device argument (NULL: the default of
 * ds_device_select, taken as cuda only when every rank would take it, so all
 * ranks run the same path) and on cuda bind each rank to a GPU of its node
 * (ds_device_bind, shared: several ranks may use one GPU). 0, or on every
 * rank the agreed ds_exit code with the message printed once. */
int ds_dev_open(const ds_ctx *ctx, const char *arg, ds_dev **out);
ds_device ds_dev_kind(const ds_dev *d);

/* For a job whose work has no GPU path yet (the model engine runs on the
 * CPU): a --device argument that may only be cpu (or absent). 0, or
 * DS_EXIT_USAGE with ds_err: "cuda" is refused as unsupported by this job
 * (whether or not a GPU is present), other names as unknown devices. */
int ds_dev_cpu_only(const char *arg);
/* Frees the GPU buffers; NULL is fine. */
void ds_dev_close(ds_dev *d);

/* ds_delta_code on the device: signs and scales of the coded tensor e
 * from W_f and W_b (e->t.dtype). *bad = -1, or the flat index of the first
 * non-finite delta (found on the CPU, the rare error path). 0, or
 * DS_EXIT_FAIL with ds_err naming the tensor when the GPU fails. */
int ds_dev_code(ds_dev *d, const ds_delta_entry *e, const void *wf, const void *wb, uint64_t *bits, float *scales,
                int64_t *bad);

/* ds_bitpack_apply in place on the device: w (rows x cols of e, dtype dt)
 * becomes round_dt(w + g(2b - 1)) with e's scale kind. 0, or DS_EXIT_FAIL
 * with ds_err naming the tensor when the GPU fails. */
int ds_dev_apply(ds_dev *d, ds_dtype dt, void *w, const ds_delta_entry *e, const uint64_t *bits,
                 const float *scales);
#endif
