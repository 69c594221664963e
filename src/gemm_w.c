/* Products with weights in their stored precision (src/gemm_w.h): f32
 * weights to BLAS, f16 / bf16 weights in panels converted to f32 (the
 * kernels of kernels/cpu/gemm_bf16.h) for cblas_sgemm, or the direct kernel. */
#include "config.h"
#include "src/gemm_w.h"
#include <cblas.h>

static size_t esize(ds_kdtype dt) { return dt == DS_KDT_F32 ? 4 : 2; }

void ds_gemm_xwt(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                 float *y, float *scratch, size_t scratch_n)
{
    if (N == 0 || out == 0) return;
    if (dt == DS_KDT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, x, (int)in, W, (int)in,
                    beta, y, (int)out);
        return;
    }
    if (N < DS_GEMM_DIRECT_N || !scratch || scratch_n < in) {
        ds_gemm_xwt_direct(dt, N, in, out, x, W, beta, y);
        return;
    }
    const size_t P = scratch_n / in;
    for (size_t o0 = 0; o0 < out; o0 += P) {
        const size_t p = out - o0 < P ? out - o0 : P;
        ds_wconv_f32(dt, (const char *)W + o0 * in * esize(dt), scratch, p * in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)p, (int)in, 1.0f, x, (int)in, scratch,
                    (int)in, beta, y + o0, (int)out);
    }
}

void ds_gemm_xw(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W, float beta,
                float *dx, float *scratch, size_t scratch_n)
{
    if (N == 0 || in == 0) return;
    if (dt == DS_KDT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)out, 1.0f, dy, (int)out, W,
                    (int)in, beta, dx, (int)in);
        return;
    }
    if (!scratch || scratch_n < in) {
        ds_gemm_xw_ref(dt, N, in, out, dy, W, beta, dx);
        return;
    }
    /* dx = beta*dx + sum over panels of rows [o0, o0+p) of W: dy[:, o0:o0+p] . W[o0:o0+p, :] */
    const size_t P = scratch_n / in;
    for (size_t o0 = 0; o0 < out; o0 += P) {
        const size_t p = out - o0 < P ? out - o0 : P;
        ds_wconv_f32(dt, (const char *)W + o0 * in * esize(dt), scratch, p * in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)p, 1.0f, dy + o0, (int)out,
                    scratch, (int)in, o0 == 0 ? beta : 1.0f, dx, (int)in);
    }
    if (out == 0 && beta == 0)
        for (size_t i = 0; i < N * in; i++) dx[i] = 0;
}

void ds_gemv_w(ds_kdtype dt, size_t in, size_t out, const void *W, const float *x, float beta, float *y)
{
    if (out == 0) return;
    if (dt == DS_KDT_F32) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, W, (int)in, x, 1, beta, y, 1);
        return;
    }
    ds_gemm_xwt_direct(dt, 1, in, out, x, W, beta, y);
}
