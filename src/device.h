/* Where a job computes: --device cpu|cuda, and one rank per GPU. */
#ifndef DS_DEVICE_H
#define DS_DEVICE_H
#include "src/ctx.h"

typedef enum { DS_DEVICE_CPU = 0, DS_DEVICE_CUDA = 1 } ds_device;

/* Resolve a --device argument: "cpu", "cuda", or NULL for the default (cuda
 * when this build has CUDA and a GPU is present, else cpu). "cuda" in a
 * build without CUDA or on a machine without a GPU, or an unknown name:
 * DS_EXIT_USAGE with ds_err saying why. */
int ds_device_select(const char *arg, ds_device *out);
const char *ds_device_name(ds_device d);

/* GPUs this process can use: 0 in a build without CUDA or without a GPU. */
int ds_device_gpu_count(void);

/* Collective: bind each rank to a GPU of its node, local rank modulo the
 * node's GPU count, and set *gpu. With exclusive (NCCL: one rank per GPU)
 * more ranks on a node than GPUs is an error. 0, or on every rank
 * DS_EXIT_FAIL (no GPU / too many ranks) or DS_EXIT_USAGE (no CUDA build). */
int ds_device_bind(const ds_ctx *ctx, int exclusive, int *gpu);
#endif
