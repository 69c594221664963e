/* --device parsing and GPU binding (see src/device.h). */
#include "config.h"
#include "src/device.h"
#include <string.h>
#ifdef DS_HAVE_CUDA
#include "kernels/cuda/ds_cuda.h"
#endif

const char *ds_device_name(ds_device d) { return d == DS_DEVICE_CUDA ? "cuda" : "cpu"; }

int ds_device_gpu_count(void)
{
#ifdef DS_HAVE_CUDA
    return ds_cuda_device_count();
#else
    return 0;
#endif
}

/* Why CUDA cannot be used here, or NULL when it can. */
static const char *cuda_unavailable(char *buf, size_t n)
{
#ifdef DS_HAVE_CUDA
    if (ds_cuda_device_count() > 0) return NULL;
    snprintf(buf, n, "no GPU found (%s)", ds_cuda_no_device_reason());
#else
    snprintf(buf, n, "this build has no CUDA support (configure --with-cuda)");
#endif
    return buf;
}

int ds_device_select(const char *arg, ds_device *out)
{
    char why[320];
    if (arg == NULL) {
        *out = cuda_unavailable(why, sizeof why) ? DS_DEVICE_CPU : DS_DEVICE_CUDA;
        return 0;
    }
    if (strcmp(arg, "cpu") == 0) {
        *out = DS_DEVICE_CPU;
        return 0;
    }
    if (strcmp(arg, "cuda") == 0) {
        if (cuda_unavailable(why, sizeof why))
            return ds_err(DS_EXIT_USAGE, "--device cuda: %s; use --device cpu", why);
        *out = DS_DEVICE_CUDA;
        return 0;
    }
    return ds_err(DS_EXIT_USAGE, "--device: unknown device '%s' (cpu or cuda)", arg);
}

int ds_device_bind(const ds_ctx *ctx, int exclusive, int *gpu)
{
    MPI_Comm node;
    int local, nlocal, rc = 0;
    MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_free(&node);
    *gpu = -1;
#ifdef DS_HAVE_CUDA
    int n = ds_cuda_device_count();
    if (n == 0)
        rc = ds_err(DS_EXIT_FAIL, "rank %d: no GPU found (%s)", ctx->rank, ds_cuda_no_device_reason());
    else if (exclusive && nlocal > n)
        rc = ds_err(DS_EXIT_FAIL, "%d ranks on a node with %d GPU(s): run one rank per GPU", nlocal, n);
    else {
        cudaError_t e = cudaSetDevice(local % n);
        if (e != cudaSuccess)
            rc = ds_err(DS_EXIT_FAIL, "rank %d: cudaSetDevice(%d): %s", ctx->rank, local % n, cudaGetErrorString(e));
        else *gpu = local % n;
    }
#else
    (void)exclusive;
    rc = ds_err(DS_EXIT_USAGE, "this build has no CUDA support (configure --with-cuda)");
#endif
    return ds_ctx_agree(ctx, rc);
}
