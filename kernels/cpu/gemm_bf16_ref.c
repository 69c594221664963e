/* Portable definitions of the weight-precision products (gemm_bf16.h):
 * scalar C, k summed in increasing order in f32. */
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/half.h"

static inline float wval(ds_kdtype dt, const void *W, size_t i)
{
    switch (dt) {
    case DS_KDT_BF16: return ds_bf16_to_f32(((const uint16_t *)W)[i]);
    case DS_KDT_F16: return ds_f16_to_f32(((const uint16_t *)W)[i]);
    default: return ((const float *)W)[i];
    }
}

void ds_wconv_f32_ref(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = wval(dt, src, i);
}

void ds_gemm_xwt_ref(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                     float *y)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            const float *xr = x + n * in;
            float s = 0;
            for (size_t k = 0; k < in; k++) s += xr[k] * wval(dt, W, o * in + k);
            float *yo = y + n * out + o;
            *yo = beta != 0 ? beta * *yo + s : s;
        }
}

void ds_gemm_xw_ref(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W, float beta,
                    float *dx)
{
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < in; k++) {
            const float *dyr = dy + n * out;
            float s = 0;
            for (size_t o = 0; o < out; o++) s += dyr[o] * wval(dt, W, o * in + k);
            float *d = dx + n * in + k;
            *d = beta != 0 ? beta * *d + s : s;
        }
}
