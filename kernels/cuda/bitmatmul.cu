/* Batched BitDelta product for many users sharing one base layer:
 * y_u = x_u W_b^T (one cuBLAS bf16 GEMM for all users) + x_u (G_u o S_u)^T
 * (this kernel, reading the packed bits; no per-user weight exists).
 *
 * The 1-bit part uses sum_j s_j x_j = 2 sum_{j: b_j = 1} x_j - sum_j x_j, so
 * the inner loop is a bit test and an add. A block holds one user's tokens
 * (a tile of MT of them) in shared memory as float32 and walks RPB output
 * rows, one warp per row at a time: lane l takes elements 4l..4l+3 of every
 * 128-element chunk (a float4 of x, a nibble of the bits). */
#include "kernels/cuda/cuda_impl.h"
#include <limits.h>

#define MM_THREADS 256
#define MM_WARPS (MM_THREADS / 32)

template <int MT>
__global__ void __launch_bounds__(MM_THREADS)
    bitmm_kernel(const uint16_t *__restrict__ x, const uint64_t *__restrict__ bits,
                 ds_scale_kind kind, const float *__restrict__ scale, float *__restrict__ y,
                 size_t m, size_t n, size_t k, size_t words, size_t chunks, size_t rpb)
{
    extern __shared__ float4 smem[];
    float *xs = (float *)smem;          /* [MT][chunks * 128] */
    float *xsum = xs + MT * chunks * 128; /* [MT] */
    const size_t u = blockIdx.y, tok0 = (size_t)blockIdx.z * MT, kp = chunks * 128;
    const unsigned tid = threadIdx.x, lane = tid % 32, warp = tid / 32;

    for (int t = 0; t < MT; t++) {
        const size_t tok = tok0 + t;
        const uint16_t *xr = x + (u * m + tok) * k;
        for (size_t j = tid; j < kp; j += MM_THREADS) {
            float v = 0.0f; /* padding columns and missing tokens add nothing */
            if (tok < m && j < k) {
                v = ds_bf16_to_f32(xr[j]);
                if (kind == DS_SCALE_COL) v *= scale[u * k + j];
            }
            xs[t * kp + j] = v;
        }
    }
    __syncthreads();
    if (warp < MT) {
        float s = 0.0f;
        for (size_t j = lane; j < kp; j += 32) s += xs[warp * kp + j];
        for (int off = 16; off >= 1; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) xsum[warp] = s;
    }
    __syncthreads();

    const unsigned sub = lane / 16, sh = 4 * (lane % 16);
    const float4 *x4 = (const float4 *)xs;
    const size_t o_end = min(n, (size_t)(blockIdx.x + 1) * rpb);
    for (size_t o = blockIdx.x * rpb + warp; o < o_end; o += MM_WARPS) {
        const uint64_t *brow = bits + (u * n + o) * words;
        float acc[MT];
#pragma unroll
        for (int t = 0; t < MT; t++) acc[t] = 0.0f;
#pragma unroll 4
        for (size_t c = 0; c < chunks; c++) {
            const size_t wi = 2 * c + sub;
            const unsigned nib = wi < words ? (unsigned)(__ldg(brow + wi) >> sh) & 15u : 0u;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                const float4 xv = x4[t * (kp / 4) + c * 32 + lane];
                acc[t] += (nib & 1u) ? xv.x : 0.0f;
                acc[t] += (nib & 2u) ? xv.y : 0.0f;
                acc[t] += (nib & 4u) ? xv.z : 0.0f;
                acc[t] += (nib & 8u) ? xv.w : 0.0f;
            }
        }
#pragma unroll
        for (int t = 0; t < MT; t++)
            for (int off = 16; off >= 1; off /= 2) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
        if (lane == 0) {
            const float g = kind == DS_SCALE_TENSOR ? scale[u] : kind == DS_SCALE_ROW ? scale[u * n + o] : 1.0f;
#pragma unroll
            for (int t = 0; t < MT; t++)
                if (tok0 + t < m) y[(u * m + tok0 + t) * n + o] += g * (2.0f * acc[t] - xsum[t]);
        }
    }
}

template <int MT>
static int launch(dim3 grid, size_t smem, const uint16_t *x, const uint64_t *bits, ds_scale_kind kind,
                  const float *scale, float *y, size_t m, size_t n, size_t k, size_t words, size_t chunks,
                  size_t rpb, cudaStream_t st)
{
    const char *what = "ds_cuda_bitdelta_matmul";
    DS_CUDA_TRY(what, cudaFuncSetAttribute(bitmm_kernel<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    bitmm_kernel<MT><<<grid, MM_THREADS, smem, st>>>(x, bits, kind, scale, y, m, n, k, words, chunks, rpb);
    DS_CUDA_LAUNCHED(what);
    return 0;
}

static const char *cublas_msg(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialised";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS: not supported on this GPU";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS: not supported";
    default: return "cuBLAS error";
    }
}

extern "C" int ds_cuda_bitdelta_matmul(cublasHandle_t cublas, size_t U, size_t m, size_t n, size_t k,
                                       const uint16_t *d_x, const uint16_t *d_wb, const uint64_t *d_bits,
                                       ds_scale_kind kind, const float *d_scale, float *d_y,
                                       cudaStream_t stream)
{
    const char *what = "ds_cuda_bitdelta_matmul";
    if (kind != DS_SCALE_TENSOR && kind != DS_SCALE_ROW && kind != DS_SCALE_COL)
        return ds_cuda_fail(what, "unknown scale kind %d", (int)kind);
    if (U == 0 || m == 0 || n == 0 || k == 0) return 0;
    if (n > INT_MAX || k > INT_MAX || U * m > INT_MAX || U > 65535)
        return ds_cuda_fail(what, "sizes too large (U=%zu m=%zu n=%zu k=%zu)", U, m, n, k);
    const size_t words = ds_bitpack_words(k), chunks = (words + 1) / 2;

    int dev, optin, sms;
    DS_CUDA_TRY(what, cudaGetDevice(&dev));
    DS_CUDA_TRY(what, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    DS_CUDA_TRY(what, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    int mt = m >= 8 ? 8 : m >= 4 ? 4 : m >= 2 ? 2 : 1;
    while (mt > 1 && (size_t)mt * (chunks * 128 + 1) * sizeof(float) > (size_t)optin) mt /= 2;
    const size_t smem = (size_t)mt * (chunks * 128 + 1) * sizeof(float);
    if (smem > (size_t)optin)
        return ds_cuda_fail(what, "k = %zu needs %zu bytes of shared memory per token, this GPU has %d",
                            k, smem, optin);
    const size_t ztiles = (m + mt - 1) / mt;
    if (ztiles > 65535) return ds_cuda_fail(what, "too many tokens per user (%zu)", m);
    /* Rows per block: as many as keep at least two blocks per SM busy. */
    size_t rpb = 64;
    while (rpb > MM_WARPS && ((n + rpb - 1) / rpb) * U * ztiles < 2 * (size_t)sms) rpb /= 2;

    cublasStatus_t cs = cublasSetStream(cublas, stream);
    if (cs == CUBLAS_STATUS_SUCCESS) {
        const float one = 1.0f, zero = 0.0f;
        /* Column-major view: Y^T (n x Um) = W_b (k x n stored, transposed) * X^T (k x Um). */
        cs = cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)(U * m), (int)k, &one, d_wb,
                          CUDA_R_16BF, (int)k, d_x, CUDA_R_16BF, (int)k, &zero, d_y, CUDA_R_32F, (int)n,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (cs != CUBLAS_STATUS_SUCCESS) return ds_cuda_fail(what, "base GEMM: %s (%d)", cublas_msg(cs), (int)cs);

    const dim3 grid((unsigned)((n + rpb - 1) / rpb), (unsigned)U, (unsigned)ztiles);
    switch (mt) {
    case 8: return launch<8>(grid, smem, d_x, d_bits, kind, d_scale, d_y, m, n, k, words, chunks, rpb, stream);
    case 4: return launch<4>(grid, smem, d_x, d_bits, kind, d_scale, d_y, m, n, k, words, chunks, rpb, stream);
    case 2: return launch<2>(grid, smem, d_x, d_bits, kind, d_scale, d_y, m, n, k, words, chunks, rpb, stream);
    default: return launch<1>(grid, smem, d_x, d_bits, kind, d_scale, d_y, m, n, k, words, chunks, rpb, stream);
    }
}
