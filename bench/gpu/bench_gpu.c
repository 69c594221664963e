/* GPU benchmarks, each against a limit or a peer measured in the same run:
 *  - sign-pack and apply in GB/s vs device-to-device cudaMemcpy (goal >= 70%);
 *  - the batched 1-bit product for 16 users of a 4096 x 4096 layer vs 16
 *    separate dense bf16 products through cuBLAS (goal >= 4x faster);
 *  - Hamming matrix and trimmed mean times (for reference).
 * Bytes count reads + writes. Exit 77 without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cuda/ds_cuda.h"
#include "kernels/half.h"
#include "tests/gpu/cuda_check.h"

static cudaEvent_t ev0, ev1;
static void tic(void) { CUDA_OK(cudaEventRecord(ev0, 0)); }
static double toc_ms(void)
{
    float ms;
    CUDA_OK(cudaEventRecord(ev1, 0));
    CUDA_OK(cudaEventSynchronize(ev1));
    CUDA_OK(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms;
}

static void *dev_alloc(size_t n)
{
    void *p;
    CUDA_OK(cudaMalloc(&p, n));
    return p;
}

/* Fill device memory with pseudo-random bytes (a kernel-free, repeatable way:
 * one host buffer copied over). */
static void dev_fill(void *d, size_t n, unsigned seed)
{
    size_t blk = (size_t)1 << 24;
    unsigned char *h = malloc(blk);
    uint64_t s = 0x9e3779b97f4a7c15ull ^ seed;
    for (size_t i = 0; i < blk; i += 8) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        memcpy(h + i, &s, 8);
    }
    for (size_t off = 0; off < n; off += blk)
        CUDA_OK(cudaMemcpy((char *)d + off, h, n - off < blk ? n - off : blk, cudaMemcpyHostToDevice));
    free(h);
}

/* Finite bf16 values in [-2, 2): random mantissa and sign, small exponent. */
static void dev_fill_bf16(uint16_t *d, size_t n, unsigned seed)
{
    uint16_t *h = malloc(n * 2);
    uint64_t s = 0x2545f4914f6cdd1dull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        h[i] = (uint16_t)((s & 0x807f) | (0x3c00 + ((s >> 16) & 0x380)));
    }
    CUDA_OK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
}

int main(void)
{
    if (ds_cuda_device_count() == 0) {
        printf("no GPU: skipped (%s)\n", ds_cuda_no_device_reason());
        return 77;
    }
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
    CUDA_OK(cudaEventCreate(&ev0));
    CUDA_OK(cudaEventCreate(&ev1));
    const int reps = 10;

    /* Device-to-device copy: the bandwidth limit of a streaming kernel. */
    size_t cb = (size_t)1 << 30;
    void *a = dev_alloc(cb), *b = dev_alloc(cb);
    CUDA_OK(cudaMemcpy(b, a, cb, cudaMemcpyDeviceToDevice));
    tic();
    for (int r = 0; r < reps; r++) CUDA_OK(cudaMemcpyAsync(b, a, cb, cudaMemcpyDeviceToDevice, 0));
    double d2d = 2.0 * cb * reps / (toc_ms() * 1e-3) / 1e9;
    printf("d2d copy 1 GiB: %.0f GB/s (read + write)\n", d2d);
    CUDA_OK(cudaFree(a));
    CUDA_OK(cudaFree(b));

    /* Sign-pack and apply on a 16384 x 8192 matrix. */
    const size_t rows = 16384, cols = 8192, n = rows * cols, words = ds_bitpack_words(cols);
    const ds_kdtype dts[2] = {DS_KDT_BF16, DS_KDT_F32};
    const char *names[2] = {"bf16", "f32"};
    uint64_t *bits = dev_alloc(rows * words * 8);
    double *row_abs = dev_alloc(rows * 8);
    float *scale = dev_alloc(4);
    float g = 0.01f;
    CUDA_OK(cudaMemcpy(scale, &g, 4, cudaMemcpyHostToDevice));
    for (int t = 0; t < 2; t++) {
        size_t es = dts[t] == DS_KDT_F32 ? 4 : 2;
        void *wf = dev_alloc(n * es), *wb = dev_alloc(n * es);
        if (es == 2) {
            dev_fill_bf16(wf, n, 1);
            dev_fill_bf16(wb, n, 2);
        } else { /* f32 from bf16 patterns: finite values */
            dev_fill_bf16(wf, 2 * n, 1);
            dev_fill_bf16(wb, 2 * n, 2);
        }
        DS_OK(ds_cuda_bitpack_compress(dts[t], wf, wb, rows, cols, bits, row_abs, NULL, 0));
        tic();
        for (int r = 0; r < reps; r++) DS_OK(ds_cuda_bitpack_compress(dts[t], wf, wb, rows, cols, bits, row_abs, NULL, 0));
        double ms = toc_ms() / reps, bytes = 2.0 * n * es + rows * words * 8.0 + rows * 8.0;
        printf("sign-pack %s %zux%zu: %.3f ms, %.0f GB/s = %.0f%% of d2d (goal >= 70%%)\n", names[t], rows, cols, ms,
               bytes / (ms * 1e-3) / 1e9, 100.0 * bytes / (ms * 1e-3) / 1e9 / d2d);
        DS_OK(ds_cuda_bitpack_apply(dts[t], wb, dts[t], wb, bits, rows, cols, DS_SCALE_TENSOR, scale, 0));
        tic();
        for (int r = 0; r < reps; r++)
            DS_OK(ds_cuda_bitpack_apply(dts[t], wb, dts[t], wb, bits, rows, cols, DS_SCALE_TENSOR, scale, 0));
        ms = toc_ms() / reps;
        bytes = 2.0 * n * es + rows * words * 8.0;
        printf("apply %s %zux%zu in place: %.3f ms, %.0f GB/s = %.0f%% of d2d (goal >= 70%%)\n", names[t], rows, cols,
               ms, bytes / (ms * 1e-3) / 1e9, 100.0 * bytes / (ms * 1e-3) / 1e9 / d2d);
        CUDA_OK(cudaFree(wf));
        CUDA_OK(cudaFree(wb));
    }
    CUDA_OK(cudaFree(bits));
    CUDA_OK(cudaFree(row_abs));

    /* Batched 1-bit product: 16 users, one 4096 x 4096 layer. */
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasCreate failed\n"); return 1; }
    const size_t U = 16, N = 4096, K = 4096, kw = ds_bitpack_words(K);
    uint16_t *wbase = dev_alloc(N * K * 2), *wu = dev_alloc(U * N * K * 2);
    uint64_t *ubits = dev_alloc(U * N * kw * 8);
    float *uscale = dev_alloc(U * 4), hs[16];
    for (size_t u = 0; u < U; u++) hs[u] = 0.001f * (float)(u + 1);
    CUDA_OK(cudaMemcpy(uscale, hs, U * 4, cudaMemcpyHostToDevice));
    dev_fill_bf16(wbase, N * K, 3);
    dev_fill(ubits, U * N * kw * 8, 4); /* K is a multiple of 64: no padding bits */
    for (size_t u = 0; u < U; u++) /* the dense peer's materialised per-user weights */
        DS_OK(ds_cuda_bitpack_apply(DS_KDT_BF16, wu + u * N * K, DS_KDT_BF16, wbase, ubits + u * N * kw, N, K,
                                    DS_SCALE_TENSOR, uscale + u, 0));
    const size_t ms_[3] = {1, 4, 16};
    for (int mi = 0; mi < 3; mi++) {
        const size_t m = ms_[mi];
        uint16_t *x = dev_alloc(U * m * K * 2);
        float *y = dev_alloc(U * m * N * 4), *yd = dev_alloc(U * m * N * 4);
        dev_fill_bf16(x, U * m * K, 5);
        DS_OK(ds_cuda_bitdelta_matmul(h, U, m, N, K, x, wbase, ubits, DS_SCALE_TENSOR, uscale, y, 0));
        tic();
        for (int r = 0; r < reps; r++)
            DS_OK(ds_cuda_bitdelta_matmul(h, U, m, N, K, x, wbase, ubits, DS_SCALE_TENSOR, uscale, y, 0));
        double t1 = toc_ms() / reps;
        const float one = 1.0f, zero = 0.0f;
        cublasSetStream(h, 0);
        tic();
        for (int r = 0; r <= reps; r++) {
            if (r == 1) tic(); /* the first round warms up */
            for (size_t u = 0; u < U; u++)
                if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)m, (int)K, &one, wu + u * N * K, CUDA_R_16BF,
                                 (int)K, x + u * m * K, CUDA_R_16BF, (int)K, &zero, yd + u * m * N, CUDA_R_32F, (int)N,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                    fprintf(stderr, "cublasGemmEx failed\n");
                    return 1;
                }
        }
        double t2 = toc_ms() / reps;
        /* Same products up to the bf16 rounding of the dense weights. */
        float *hy = malloc(U * m * N * 4), *hyd = malloc(U * m * N * 4);
        CUDA_OK(cudaMemcpy(hy, y, U * m * N * 4, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(hyd, yd, U * m * N * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        for (size_t i = 0; i < U * m * N; i++) {
            num += ((double)hy[i] - hyd[i]) * ((double)hy[i] - hyd[i]);
            den += (double)hyd[i] * hyd[i];
        }
        printf("batched 1-bit product U=16 %zux%zu m=%zu: %.1f us; 16 dense cuBLAS bf16: %.1f us; "
               "speedup %.2fx (goal >= 4x); nmse vs dense %.2g\n",
               N, K, m, t1 * 1e3, t2 * 1e3, t2 / t1, den > 0 ? num / den : num);
        free(hy);
        free(hyd);
        CUDA_OK(cudaFree(x));
        CUDA_OK(cudaFree(y));
        CUDA_OK(cudaFree(yd));
    }

    /* Aggregation kernels on the 16 users' bits (4096 x 4096 each). */
    const uint64_t *v[16];
    for (size_t u = 0; u < U; u++) v[u] = ubits + u * N * kw;
    uint64_t *ham = dev_alloc(U * U * 8);
    CUDA_OK(cudaMemset(ham, 0, U * U * 8));
    DS_OK(ds_cuda_hamming_pairs(U, v, 0, N * kw, ham, 0));
    tic();
    DS_OK(ds_cuda_hamming_pairs(U, v, 0, N * kw, ham, 0));
    double th = toc_ms();
    float *agg = dev_alloc(N * K * 4);
    DS_OK(ds_cuda_trimmed_mean(U, v, N, K, DS_SCALE_TENSOR, hs, 3, agg, 0));
    tic();
    DS_OK(ds_cuda_trimmed_mean(U, v, N, K, DS_SCALE_TENSOR, hs, 3, agg, 0));
    double tt = toc_ms();
    printf("hamming pairs U=16 %zux%zu: %.3f ms (%.0f GB/s of bits read)\n", N, K, th,
           U * N * kw * 8.0 / (th * 1e-3) / 1e9);
    printf("trimmed mean (trim 3) U=16 %zux%zu: %.3f ms\n", N, K, tt);
    CUDA_OK(cudaFree(ham));
    CUDA_OK(cudaFree(agg));
    CUDA_OK(cudaFree(wbase));
    CUDA_OK(cudaFree(wu));
    CUDA_OK(cudaFree(ubits));
    CUDA_OK(cudaFree(uscale));
    CUDA_OK(cudaFree(scale));
    cublasDestroy(h);
    return 0;
}
