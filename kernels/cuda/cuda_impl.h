/* Internal to kernels/cuda: error recording and launch helpers shared by the
 * .cu files. Not for callers outside kernels/cuda. */
#ifndef DS_KERNELS_CUDA_IMPL_H
#define DS_KERNELS_CUDA_IMPL_H
#include "kernels/cuda/ds_cuda.h"
#include "kernels/half.h"

/* Record "what: message" for ds_cuda_errmsg(); returns -1. */
int ds_cuda_fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Check a CUDA runtime call; on error record it (with the call site) and
 * return -1 from the calling function. */
#define DS_CUDA_TRY(what, call)                                                           \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess)                                                            \
            return ds_cuda_fail(what, "%s (%s:%d)", cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

/* After a kernel launch: a bad configuration shows up here, at once. */
#define DS_CUDA_LAUNCHED(what) DS_CUDA_TRY(what, cudaGetLastError())

/* Largest grid.x used by the 1-D launches (blocks loop beyond it). */
#define DS_CUDA_MAX_BLOCKS 65535u

/* Element loads/stores by dtype, in float32 (the contract's arithmetic). */
template <ds_kdtype T> struct ds_elem;
template <> struct ds_elem<DS_KDT_F32> {
    typedef float raw;
    static __device__ __forceinline__ float load(raw v) { return v; }
    static __device__ __forceinline__ raw store(float f) { return f; }
};
template <> struct ds_elem<DS_KDT_F16> {
    typedef uint16_t raw;
    static __device__ __forceinline__ float load(raw v) { return ds_f16_to_f32(v); }
    static __device__ __forceinline__ raw store(float f) { return ds_f32_to_f16(f); }
};
template <> struct ds_elem<DS_KDT_BF16> {
    typedef uint16_t raw;
    static __device__ __forceinline__ float load(raw v) { return ds_bf16_to_f32(v); }
    static __device__ __forceinline__ raw store(float f) { return ds_f32_to_bf16(f); }
};
#endif
