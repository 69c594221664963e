/* The NCCL backend (src/comm_nccl.c) on a single-process communicator of one
 * rank: host buffers (staged in pieces smaller than the data, to exercise
 * the splitting) and device buffers. With one rank every collective must
 * give back exactly what was sent. Exits 77 (skipped) without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cuda/ds_cuda.h"
#include "src/comm_nccl.h"

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("FAIL %s\n", what);
        failures++;
    }
}

#define OK(call)                                                                  \
    do {                                                                          \
        if ((call) != 0) {                                                        \
            printf("FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, n.err);     \
            return 1;                                                             \
        }                                                                         \
    } while (0)
#define CUDA_OK(call)                                                             \
    do {                                                                          \
        cudaError_t e_ = (call);                                                  \
        if (e_ != cudaSuccess) {                                                  \
            printf("FAIL %s: %s\n", #call, cudaGetErrorString(e_));               \
            return 1;                                                             \
        }                                                                         \
    } while (0)

int main(void)
{
    if (ds_cuda_device_count() == 0) {
        printf("no GPU: skipped (%s)\n", ds_cuda_no_device_reason());
        return 77;
    }
    ncclUniqueId id;
    if (ncclGetUniqueId(&id) != ncclSuccess) {
        printf("FAIL ncclGetUniqueId\n");
        return 1;
    }
    ds_nccl n;
    /* 64-byte staging halves: every host buffer below goes in several pieces. */
    OK(ds_nccl_init(&n, id, 1, 0, 64));

    enum { N = 1001 };
    float *f = malloc(N * sizeof *f), *fr = malloc(N * sizeof *fr);
    double *d = malloc(N * sizeof *d);
    unsigned char *b = malloc(N), *br = malloc(N);
    for (int i = 0; i < N; i++) {
        f[i] = 0.5f * (float)i - 7.0f;
        d[i] = 1e10 + (double)i;
        b[i] = (unsigned char)(i * 13 + 1);
    }
    OK(ds_nccl_allreduce_sum(&n, ncclFloat32, f, fr, N));
    check(memcmp(f, fr, N * sizeof *f) == 0, "allreduce f32 host");
    double *d0 = malloc(N * sizeof *d);
    memcpy(d0, d, N * sizeof *d);
    OK(ds_nccl_allreduce_sum(&n, ncclFloat64, d, d, N)); /* in place */
    check(memcmp(d0, d, N * sizeof *d) == 0, "allreduce f64 host in place");
    OK(ds_nccl_allgather(&n, b, br, N));
    check(memcmp(b, br, N) == 0, "allgather host");
    memcpy(br, b, N);
    OK(ds_nccl_broadcast(&n, br, N, 0));
    check(memcmp(b, br, N) == 0, "broadcast host");

    float *df, *dfr;
    CUDA_OK(cudaMalloc((void **)&df, N * sizeof *df));
    CUDA_OK(cudaMalloc((void **)&dfr, N * sizeof *dfr));
    CUDA_OK(cudaMemcpy(df, f, N * sizeof *f, cudaMemcpyHostToDevice));
    OK(ds_nccl_allreduce_sum(&n, ncclFloat32, df, dfr, N));
    memset(fr, 0, N * sizeof *fr);
    CUDA_OK(cudaMemcpy(fr, dfr, N * sizeof *fr, cudaMemcpyDeviceToHost));
    check(memcmp(f, fr, N * sizeof *f) == 0, "allreduce f32 device");
    OK(ds_nccl_allgather(&n, df, dfr, N * sizeof *df));
    memset(fr, 0, N * sizeof *fr);
    CUDA_OK(cudaMemcpy(fr, dfr, N * sizeof *fr, cudaMemcpyDeviceToHost));
    check(memcmp(f, fr, N * sizeof *f) == 0, "allgather device");
    OK(ds_nccl_broadcast(&n, df, N * sizeof *df, 0));
    CUDA_OK(cudaMemcpy(fr, df, N * sizeof *fr, cudaMemcpyDeviceToHost));
    check(memcmp(f, fr, N * sizeof *f) == 0, "broadcast device");
    cudaFree(df);
    cudaFree(dfr);
    ds_nccl_free(&n);
    free(f); free(fr); free(d); free(d0); free(b); free(br);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
