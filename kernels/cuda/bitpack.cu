/* GPU twins of kernels/cpu/bitpack.h: sign-pack with |delta| sums, apply,
 * expand. Same bits, bit-identical sums (the contract's lane order), same
 * float32 arithmetic and rounding as the CPU reference. */
#include "kernels/cuda/cuda_impl.h"

/* Compress: a block owns CP_ROWS rows and walks them in column tiles of
 * CP_TILE. Loads are coalesced (16-byte vectors when aligned) into shared
 * memory as float deltas; then 16 lanes per row accumulate |delta| exactly in
 * the contract's order (lane k takes columns k, k+16, ... in increasing
 * order) and a warp ballot turns 16 lanes' signs into 16 bits of a word. */
#define CP_ROWS 8
#define CP_LANES 16
#define CP_TILE 512
#define CP_PITCH (CP_TILE + 16) /* two rows of a warp hit different banks */

template <ds_kdtype T, bool VEC>
__global__ void __launch_bounds__(CP_ROWS *CP_LANES)
    compress_kernel(const typename ds_elem<T>::raw *__restrict__ wf,
                    const typename ds_elem<T>::raw *__restrict__ wb, size_t rows, size_t cols,
                    size_t words, uint64_t *__restrict__ bits, double *__restrict__ row_abs)
{
    typedef typename ds_elem<T>::raw raw;
    __shared__ float sd[CP_ROWS][CP_PITCH];
    const unsigned tid = threadIdx.x;
    const unsigned r = tid / CP_LANES, k = tid % CP_LANES;
    const unsigned half = (tid % 32) / CP_LANES; /* which row of the warp */
    const size_t padded = words * 64;
    for (size_t r0 = (size_t)blockIdx.x * CP_ROWS; r0 < rows; r0 += (size_t)gridDim.x * CP_ROWS) {
        const size_t row = r0 + r;
        double acc = 0.0;
        uint64_t word = 0;
        for (size_t t0 = 0; t0 < padded; t0 += CP_TILE) {
            if (VEC) {
                /* 8 consecutive elements per load; cols % 8 == 0 here. */
                for (unsigned i = tid; i < CP_ROWS * CP_TILE / 8; i += blockDim.x) {
                    unsigned rr = i / (CP_TILE / 8), c = (i % (CP_TILE / 8)) * 8;
                    size_t gr = r0 + rr, gc = t0 + c;
                    if (gr < rows && gc < cols) {
                        __align__(16) raw a[8];
                        __align__(16) raw b[8];
                        const uint4 *pa = (const uint4 *)(wf + gr * cols + gc);
                        const uint4 *pb = (const uint4 *)(wb + gr * cols + gc);
                        for (unsigned v = 0; v < sizeof a / 16; v++) {
                            ((uint4 *)a)[v] = __ldg(pa + v);
                            ((uint4 *)b)[v] = __ldg(pb + v);
                        }
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            sd[rr][c + e] = ds_elem<T>::load(a[e]) - ds_elem<T>::load(b[e]);
                    }
                }
            } else {
                for (unsigned i = tid; i < CP_ROWS * CP_TILE; i += blockDim.x) {
                    unsigned rr = i / CP_TILE, c = i % CP_TILE;
                    size_t gr = r0 + rr, gc = t0 + c;
                    if (gr < rows && gc < cols)
                        sd[rr][c] = ds_elem<T>::load(wf[gr * cols + gc]) -
                                    ds_elem<T>::load(wb[gr * cols + gc]);
                }
            }
            __syncthreads();
            for (unsigned t = 0; t < CP_TILE / CP_LANES; t++) {
                const size_t col = t0 + t * CP_LANES + k;
                const bool in = row < rows && col < cols;
                const float d = in ? sd[r][t * CP_LANES + k] : 0.0f;
                /* Adding +0.0 for padding leaves the (non-negative) sum as is. */
                acc += in ? (double)fabsf(d) : 0.0;
                const unsigned m = __ballot_sync(0xffffffffu, in && d >= 0.0f);
                word |= (uint64_t)((m >> (CP_LANES * half)) & 0xffffu) << (CP_LANES * (t % 4));
                if (t % 4 == 3) {
                    const size_t w = (t0 + (t - 3) * CP_LANES) / 64;
                    if (k == 0 && row < rows && w < words) bits[row * words + w] = word;
                    word = 0;
                }
            }
            __syncthreads();
        }
        /* s[k] += s[k+8]; s[k] += s[k+4]; s[k] += s[k+2]; s[0] + s[1]. */
        for (unsigned off = CP_LANES / 2; off >= 1; off /= 2)
            acc += __shfl_down_sync(0xffffffffu, acc, off, CP_LANES);
        if (k == 0 && row < rows && row_abs) row_abs[row] = acc;
    }
}

/* Column sums: one thread per column adds the rows in increasing order. */
template <ds_kdtype T>
__global__ void colsum_kernel(const typename ds_elem<T>::raw *__restrict__ wf,
                              const typename ds_elem<T>::raw *__restrict__ wb, size_t rows,
                              size_t cols, double *__restrict__ col_abs)
{
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols;
         j += (size_t)gridDim.x * blockDim.x) {
        double s = col_abs[j];
        for (size_t i = 0; i < rows; i++)
            s += (double)fabsf(ds_elem<T>::load(wf[i * cols + j]) - ds_elem<T>::load(wb[i * cols + j]));
        col_abs[j] = s;
    }
}

static unsigned blocks_for(size_t units, unsigned per_block)
{
    size_t b = (units + per_block - 1) / per_block;
    if (b == 0) b = 1;
    return b > DS_CUDA_MAX_BLOCKS ? DS_CUDA_MAX_BLOCKS : (unsigned)b;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <ds_kdtype T>
static int compress_t(const void *wf, const void *wb, size_t rows, size_t cols, uint64_t *bits,
                      double *row_abs, double *col_abs, cudaStream_t st)
{
    typedef typename ds_elem<T>::raw raw;
    const size_t words = ds_bitpack_words(cols);
    const unsigned nb = blocks_for(rows, CP_ROWS);
    if (cols % 8 == 0 && aligned16(wf) && aligned16(wb))
        compress_kernel<T, true><<<nb, CP_ROWS * CP_LANES, 0, st>>>(
            (const raw *)wf, (const raw *)wb, rows, cols, words, bits, row_abs);
    else
        compress_kernel<T, false><<<nb, CP_ROWS * CP_LANES, 0, st>>>(
            (const raw *)wf, (const raw *)wb, rows, cols, words, bits, row_abs);
    DS_CUDA_LAUNCHED("ds_cuda_bitpack_compress");
    if (col_abs) {
        colsum_kernel<T><<<blocks_for(cols, 256), 256, 0, st>>>((const raw *)wf, (const raw *)wb,
                                                               rows, cols, col_abs);
        DS_CUDA_LAUNCHED("ds_cuda_bitpack_compress (column sums)");
    }
    return 0;
}

extern "C" int ds_cuda_bitpack_compress(ds_kdtype dt, const void *d_wf, const void *d_wb,
                                        size_t rows, size_t cols, uint64_t *d_bits,
                                        double *d_row_abs, double *d_col_abs, cudaStream_t stream)
{
    if (rows == 0 || cols == 0) return 0;
    switch (dt) {
    case DS_KDT_F32: return compress_t<DS_KDT_F32>(d_wf, d_wb, rows, cols, d_bits, d_row_abs, d_col_abs, stream);
    case DS_KDT_F16: return compress_t<DS_KDT_F16>(d_wf, d_wb, rows, cols, d_bits, d_row_abs, d_col_abs, stream);
    case DS_KDT_BF16: return compress_t<DS_KDT_BF16>(d_wf, d_wb, rows, cols, d_bits, d_row_abs, d_col_abs, stream);
    }
    return ds_cuda_fail("ds_cuda_bitpack_compress", "unknown dtype %d", (int)dt);
}

/* Apply / expand: one thread per 8 consecutive elements of a row, i.e. one
 * byte of the row's little-endian words. */
__device__ __forceinline__ float scale_of(ds_scale_kind kind, const float *s, size_t row, size_t col)
{
    return kind == DS_SCALE_TENSOR ? s[0] : kind == DS_SCALE_ROW ? s[row] : s[col];
}

template <ds_kdtype TO, ds_kdtype TI, bool VEC>
__global__ void apply_kernel(typename ds_elem<TO>::raw *out, const typename ds_elem<TI>::raw *wb,
                             const uint8_t *__restrict__ bytes, size_t rows, size_t cols,
                             size_t row_bytes, ds_scale_kind kind, const float *__restrict__ scale)
{
    typedef typename ds_elem<TO>::raw oraw;
    typedef typename ds_elem<TI>::raw iraw;
    const size_t per_row = (cols + 7) / 8, n = rows * per_row;
    for (size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x; g < n;
         g += (size_t)gridDim.x * blockDim.x) {
        const size_t row = g / per_row, c0 = (g % per_row) * 8;
        const unsigned b = bytes[row * row_bytes + c0 / 8];
        const size_t base = row * cols + c0;
        if (VEC) {
            __align__(16) iraw in[8];
            __align__(16) oraw o[8];
            for (unsigned v = 0; v < sizeof in / 16; v++)
                ((uint4 *)in)[v] = ((const uint4 *)(wb + base))[v];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float gs = scale_of(kind, scale, row, c0 + e);
                o[e] = ds_elem<TO>::store(ds_elem<TI>::load(in[e]) + ((b >> e) & 1u ? gs : -gs));
            }
            for (unsigned v = 0; v < sizeof o / 16; v++) ((uint4 *)(out + base))[v] = ((const uint4 *)o)[v];
        } else {
            for (unsigned e = 0; e < 8 && c0 + e < cols; e++) {
                const float gs = scale_of(kind, scale, row, c0 + e);
                out[base + e] = ds_elem<TO>::store(ds_elem<TI>::load(wb[base + e]) + ((b >> e) & 1u ? gs : -gs));
            }
        }
    }
}

template <ds_kdtype TO, ds_kdtype TI>
static int apply_t(void *out, const void *wb, const uint64_t *bits, size_t rows, size_t cols,
                   ds_scale_kind kind, const float *scale, cudaStream_t st)
{
    typedef typename ds_elem<TO>::raw oraw;
    typedef typename ds_elem<TI>::raw iraw;
    const size_t row_bytes = ds_bitpack_words(cols) * 8;
    const unsigned nb = blocks_for(rows * ((cols + 7) / 8), 256);
    if (cols % 8 == 0 && aligned16(out) && aligned16(wb))
        apply_kernel<TO, TI, true><<<nb, 256, 0, st>>>((oraw *)out, (const iraw *)wb, (const uint8_t *)bits,
                                                       rows, cols, row_bytes, kind, scale);
    else
        apply_kernel<TO, TI, false><<<nb, 256, 0, st>>>((oraw *)out, (const iraw *)wb, (const uint8_t *)bits,
                                                        rows, cols, row_bytes, kind, scale);
    DS_CUDA_LAUNCHED("ds_cuda_bitpack_apply");
    return 0;
}

template <ds_kdtype TO>
static int apply_in(ds_kdtype in_dt, void *out, const void *wb, const uint64_t *bits, size_t rows,
                    size_t cols, ds_scale_kind kind, const float *scale, cudaStream_t st)
{
    switch (in_dt) {
    case DS_KDT_F32: return apply_t<TO, DS_KDT_F32>(out, wb, bits, rows, cols, kind, scale, st);
    case DS_KDT_F16: return apply_t<TO, DS_KDT_F16>(out, wb, bits, rows, cols, kind, scale, st);
    case DS_KDT_BF16: return apply_t<TO, DS_KDT_BF16>(out, wb, bits, rows, cols, kind, scale, st);
    }
    return ds_cuda_fail("ds_cuda_bitpack_apply", "unknown input dtype %d", (int)in_dt);
}

static int check_kind(const char *what, ds_scale_kind kind)
{
    if (kind != DS_SCALE_TENSOR && kind != DS_SCALE_ROW && kind != DS_SCALE_COL)
        return ds_cuda_fail(what, "unknown scale kind %d", (int)kind);
    return 0;
}

extern "C" int ds_cuda_bitpack_apply(ds_kdtype out_dt, void *d_out, ds_kdtype in_dt, const void *d_wb,
                                     const uint64_t *d_bits, size_t rows, size_t cols,
                                     ds_scale_kind kind, const float *d_scale, cudaStream_t stream)
{
    if (check_kind("ds_cuda_bitpack_apply", kind)) return -1;
    if (d_out == d_wb && out_dt != in_dt)
        return ds_cuda_fail("ds_cuda_bitpack_apply", "in place needs the same input and output dtype");
    if (rows == 0 || cols == 0) return 0;
    switch (out_dt) {
    case DS_KDT_F32: return apply_in<DS_KDT_F32>(in_dt, d_out, d_wb, d_bits, rows, cols, kind, d_scale, stream);
    case DS_KDT_F16: return apply_in<DS_KDT_F16>(in_dt, d_out, d_wb, d_bits, rows, cols, kind, d_scale, stream);
    case DS_KDT_BF16: return apply_in<DS_KDT_BF16>(in_dt, d_out, d_wb, d_bits, rows, cols, kind, d_scale, stream);
    }
    return ds_cuda_fail("ds_cuda_bitpack_apply", "unknown output dtype %d", (int)out_dt);
}

__global__ void expand_kernel(float *__restrict__ dst, const uint8_t *__restrict__ bytes, size_t rows,
                              size_t cols, size_t row_bytes, ds_scale_kind kind,
                              const float *__restrict__ scale)
{
    const size_t n = rows * cols;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / cols, col = i % cols;
        const float gs = scale_of(kind, scale, row, col);
        dst[i] = (bytes[row * row_bytes + col / 8] >> (col % 8)) & 1u ? gs : -gs;
    }
}

extern "C" int ds_cuda_bitpack_expand(float *d_dst, const uint64_t *d_bits, size_t rows, size_t cols,
                                      ds_scale_kind kind, const float *d_scale, cudaStream_t stream)
{
    if (check_kind("ds_cuda_bitpack_expand", kind)) return -1;
    if (rows == 0 || cols == 0) return 0;
    expand_kernel<<<blocks_for(rows * cols, 256), 256, 0, stream>>>(
        d_dst, (const uint8_t *)d_bits, rows, cols, ds_bitpack_words(cols) * 8, kind, d_scale);
    DS_CUDA_LAUNCHED("ds_cuda_bitpack_expand");
    return 0;
}
