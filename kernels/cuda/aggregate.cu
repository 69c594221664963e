/* Aggregation kernels on packed signs: pairwise Hamming distances (the twin
 * of ds_hamming_pairs) and the coordinate-wise trimmed mean / median of
 * 1-bit deltas computed from the bits and the sorted scales. */
#include "kernels/cuda/cuda_impl.h"
#include <stdlib.h>

/* Hamming: a block takes a 16 x 16 tile of user pairs (upper triangle of
 * tiles only) and a range of words; slabs of 64 words per user go through
 * shared memory, each thread counts one pair. Integer atomics keep the
 * result exact whatever the order. */
#define HT 16
#define HW 64

__global__ void __launch_bounds__(HT *HT)
    hamming_kernel(const uint64_t *const *__restrict__ v, size_t n, size_t ntiles, size_t w0,
                   size_t w1, size_t per_split, unsigned long long *__restrict__ out)
{
    __shared__ uint64_t a[HT][HW + 1], b[HT][HW + 1]; /* +1: pairs of rows hit other banks */
    __shared__ const uint64_t *pa[HT], *pb[HT];
    size_t p = blockIdx.x, bi = 0;
    while (p >= ntiles - bi) { p -= ntiles - bi; bi++; }
    const size_t bj = bi + p;
    const unsigned tid = threadIdx.x, ti = tid / HT, tj = tid % HT;
    if (tid < HT) {
        pa[tid] = bi * HT + tid < n ? v[bi * HT + tid] : NULL;
        pb[tid] = bj * HT + tid < n ? v[bj * HT + tid] : NULL;
    }
    const size_t ws = w0 + (size_t)blockIdx.y * per_split;
    const size_t we = ws + per_split < w1 ? ws + per_split : w1;
    unsigned long long cnt = 0;
    for (size_t s = ws; s < we; s += HW) {
        __syncthreads(); /* pointers ready / previous slab consumed */
        for (unsigned i = tid; i < HT * HW; i += blockDim.x) {
            const unsigned u = i / HW, w = i % HW;
            const bool in = s + w < we;
            a[u][w] = in && pa[u] ? pa[u][s + w] : 0;
            b[u][w] = in && pb[u] ? pb[u][s + w] : 0;
        }
        __syncthreads();
#pragma unroll 16
        for (unsigned w = 0; w < HW; w++) cnt += __popcll(a[ti][w] ^ b[tj][w]);
    }
    const size_t i = bi * HT + ti, j = bj * HT + tj;
    if (i < j && j < n && cnt) atomicAdd(out + i * n + j, cnt);
}

/* Copy the host array of n device pointers to the device (stream-ordered). */
static int upload_ptrs(const char *what, const uint64_t *const *v, size_t n, const uint64_t ***d_v,
                       cudaStream_t st)
{
    DS_CUDA_TRY(what, cudaMallocAsync((void **)d_v, n * sizeof *v, st));
    cudaError_t e = cudaMemcpyAsync((void *)*d_v, v, n * sizeof *v, cudaMemcpyHostToDevice, st);
    if (e != cudaSuccess) {
        cudaFreeAsync((void *)*d_v, st);
        return ds_cuda_fail(what, "%s", cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int ds_cuda_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                                     uint64_t *d_out, cudaStream_t stream)
{
    const char *what = "ds_cuda_hamming_pairs";
    if (n < 2 || w1 <= w0) return 0;
    const size_t tiles = (n + HT - 1) / HT, npairs = tiles * (tiles + 1) / 2;
    const size_t words = w1 - w0, slabs = (words + HW - 1) / HW;
    /* Enough blocks to fill the GPU: split the words when there are few pairs. */
    size_t splits = npairs >= 2048 ? 1 : 2048 / npairs;
    if (splits > slabs) splits = slabs;
    const size_t per_split = (slabs + splits - 1) / splits * HW;
    splits = (words + per_split - 1) / per_split;
    if (npairs > 0x7fffffffu) return ds_cuda_fail(what, "too many users (%zu)", n);
    const uint64_t **d_v;
    if (upload_ptrs(what, v, n, &d_v, stream)) return -1;
    hamming_kernel<<<dim3((unsigned)npairs, (unsigned)splits), HT * HT, 0, stream>>>(
        d_v, n, tiles, w0, w1, per_split, (unsigned long long *)d_out);
    cudaError_t e = cudaGetLastError();
    cudaFreeAsync((void *)d_v, stream);
    if (e != cudaSuccess) return ds_cuda_fail(what, "%s", cudaGetErrorString(e));
    return 0;
}

/* Trimmed mean. With the users sorted by |g| ascending and b' = b xor (g < 0)
 * the value of user u is |g_u| (2 b'_u - 1), and the sorted values of one
 * coordinate are: the b' = 0 users by descending |g| (as -|g|), then the
 * b' = 1 users by ascending |g|. So the rank of every value follows from one
 * count (c0, the number of b' = 0 users) and two running counters. */
__global__ void trimmed_kernel(const uint64_t *const *__restrict__ v, size_t n, size_t rows,
                               size_t cols, size_t words, int per_row,
                               const unsigned *__restrict__ ord, const float *__restrict__ mag,
                               const unsigned char *__restrict__ flip, size_t trim,
                               float *__restrict__ out)
{
    const size_t lo = trim, hi = n - 1 - trim;
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < rows * cols;
         c += (size_t)gridDim.x * blockDim.x) {
        const size_t row = c / cols, col = c % cols, o = per_row ? row * n : 0;
        const size_t w = row * words + col / 64;
        const unsigned sh = col % 64;
        size_t c0 = 0;
        for (size_t q = 0; q < n; q++)
            c0 += (((v[ord[o + q]][w] >> sh) & 1u) ^ flip[o + q]) == 0;
        size_t r0 = 0, r1 = 0;
        double sum = 0.0;
        for (size_t q = 0; q < n; q++) {
            const unsigned b = ((v[ord[o + q]][w] >> sh) & 1u) ^ flip[o + q];
            const size_t pos = b ? c0 + r1++ : c0 - 1 - r0++;
            if (pos >= lo && pos <= hi) sum += b ? (double)mag[o + q] : -(double)mag[o + q];
        }
        out[c] = (float)(sum / (double)(hi - lo + 1));
    }
}

typedef struct {
    float mag;
    unsigned idx;
} mag_idx;

static int mag_cmp(const void *pa, const void *pb)
{
    const mag_idx *a = (const mag_idx *)pa, *b = (const mag_idx *)pb;
    if (a->mag != b->mag) return a->mag < b->mag ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

extern "C" int ds_cuda_trimmed_mean(size_t n, const uint64_t *const *v, size_t rows, size_t cols,
                                    ds_scale_kind kind, const float *scale, size_t trim,
                                    float *d_out, cudaStream_t stream)
{
    const char *what = "ds_cuda_trimmed_mean";
    if (n == 0 || 2 * trim >= n)
        return ds_cuda_fail(what, "trim %zu needs more than %zu users", trim, 2 * trim);
    if (kind != DS_SCALE_TENSOR && kind != DS_SCALE_ROW)
        return ds_cuda_fail(what, "scales must be per tensor or per row");
    if (n > 0xffffffffu) return ds_cuda_fail(what, "too many users (%zu)", n);
    if (rows == 0 || cols == 0) return 0;
    const size_t norders = kind == DS_SCALE_ROW ? rows : 1, m = norders * n;
    unsigned *ord = (unsigned *)malloc(m * sizeof *ord);
    float *mag = (float *)malloc(m * sizeof *mag);
    unsigned char *flip = (unsigned char *)malloc(m);
    mag_idx *tmp = (mag_idx *)malloc(n * sizeof *tmp);
    if (!ord || !mag || !flip || !tmp) {
        free(ord); free(mag); free(flip); free(tmp);
        return ds_cuda_fail(what, "out of host memory");
    }
    for (size_t r = 0; r < norders; r++) {
        for (size_t u = 0; u < n; u++) {
            const float g = kind == DS_SCALE_ROW ? scale[u * rows + r] : scale[u];
            tmp[u].mag = fabsf(g);
            tmp[u].idx = (unsigned)u;
        }
        qsort(tmp, n, sizeof *tmp, mag_cmp);
        for (size_t q = 0; q < n; q++) {
            const unsigned u = tmp[q].idx;
            const float g = kind == DS_SCALE_ROW ? scale[u * rows + r] : scale[u];
            ord[r * n + q] = u;
            mag[r * n + q] = tmp[q].mag;
            flip[r * n + q] = signbit(g) ? 1 : 0;
        }
    }
    free(tmp);
    const uint64_t **d_v = NULL;
    unsigned *d_ord = NULL;
    float *d_mag = NULL;
    unsigned char *d_flip = NULL;
    int rc = upload_ptrs(what, v, n, &d_v, stream);
    cudaError_t e = cudaSuccess;
    if (!rc) {
        e = cudaMallocAsync((void **)&d_ord, m * sizeof *ord, stream);
        if (e == cudaSuccess) e = cudaMallocAsync((void **)&d_mag, m * sizeof *mag, stream);
        if (e == cudaSuccess) e = cudaMallocAsync((void **)&d_flip, m, stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(d_ord, ord, m * sizeof *ord, cudaMemcpyHostToDevice, stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(d_mag, mag, m * sizeof *mag, cudaMemcpyHostToDevice, stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(d_flip, flip, m, cudaMemcpyHostToDevice, stream);
        if (e == cudaSuccess) {
            size_t nb = (rows * cols + 255) / 256;
            trimmed_kernel<<<nb > DS_CUDA_MAX_BLOCKS ? DS_CUDA_MAX_BLOCKS : (unsigned)nb, 256, 0, stream>>>(
                d_v, n, rows, cols, ds_bitpack_words(cols), kind == DS_SCALE_ROW, d_ord, d_mag, d_flip,
                trim, d_out);
            e = cudaGetLastError();
        }
        if (e != cudaSuccess) rc = ds_cuda_fail(what, "%s", cudaGetErrorString(e));
        if (d_flip) cudaFreeAsync(d_flip, stream);
        if (d_mag) cudaFreeAsync(d_mag, stream);
        if (d_ord) cudaFreeAsync(d_ord, stream);
        cudaFreeAsync((void *)d_v, stream);
    }
    free(ord);
    free(mag);
    free(flip);
    return rc;
}
