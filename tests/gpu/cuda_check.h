/* Fail-fast checks shared by the GPU test and benchmark programs: a CUDA
 * runtime call or a ds_cuda_* kernel launch that fails prints FILE:LINE and
 * the reason and exits 1. */
#ifndef DS_TESTS_GPU_CUDA_CHECK_H
#define DS_TESTS_GPU_CUDA_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include "kernels/cuda/ds_cuda.h"

#define CUDA_OK(call)                                                                        \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
#define DS_OK(call)                                                                          \
    do {                                                                                     \
        if ((call) != 0) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, ds_cuda_errmsg());            \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
#endif
