/* exp, max and scaling for the model engine's hot loops (attention
 * softmax, log-softmax, SiLU), with GCC/Clang vector extensions, in two
 * widths of the same arithmetic: ds_v4_* (two 4-lane SSE2 vectors per step,
 * for the portable build) and ds_v8_* (one 8-lane vector, for callers that
 * src/model.c compiles with target("avx2"), chosen at run time by
 * kernels/cpu/dispatch.h). libm's expf is a call per element that the
 * compiler cannot vectorize; in the forward pass of a small model it and
 * the scalar max were a third of the time. Everything is always_inline, so
 * each caller gets code for its own target (and no 32-byte vector is passed
 * between functions of different targets).
 *
 * exp: Cephes' single-precision expf (range reduction by ln 2 in two parts,
 * a degree-6 polynomial, 2^n built in the exponent bits), within 2 ulp of
 * libm's exp for x in [-87.3, 88.3] (tests/unit/test_model.c); x is clamped
 * to that range, so exp of a very negative x is about 1e-38, not 0
 * (harmless in a softmax: a term that small does not change a float sum of
 * at least 1).
 *
 * Both widths and the scalar tail do the same IEEE operations in the same
 * order (ISO C mode: no FMA contraction) and sums group the elements of
 * each 8-element step the same way ((0+1)+(2+3))+((4+5)+(6+7)), so the two
 * widths agree bit for bit, a value does not depend on its position, and
 * results are the same on every machine and for any rank count. */
#ifndef DS_VEXP_H
#define DS_VEXP_H
#include <stdint.h>
#include <string.h>

typedef float ds_v4f __attribute__((vector_size(16)));
typedef int32_t ds_v4i __attribute__((vector_size(16)));
typedef float ds_v8f __attribute__((vector_size(32)));
typedef int32_t ds_v8i __attribute__((vector_size(32)));
#define DS_VINLINE static inline __attribute__((always_inline))

#define DS_VEXP_LO -87.33654f
#define DS_VEXP_HI 88.37626f /* 127.5 ln 2: 2^n stays finite (n <= 127) */

/* The polynomial, written once for float and the vector types (T). */
#define DS_VEXP_BODY(T, x, n)                                                                                          \
    T r = x - n * 0.693359375f;                                                                                        \
    r = r - n * -2.12194440e-4f;                                                                                       \
    T y = 1.9875691500e-4f * r + 1.3981999507e-3f;                                                                     \
    y = y * r + 8.3334519073e-3f;                                                                                      \
    y = y * r + 4.1665795894e-2f;                                                                                      \
    y = y * r + 1.6666665459e-1f;                                                                                      \
    y = y * r + 5.0000001201e-1f;                                                                                      \
    y = y * (r * r) + r + 1.0f

DS_VINLINE float ds_expf1(float x)
{
    if (x != x) return x; /* NaN: (int32_t) of it and the shift below would be undefined */
    x = x < DS_VEXP_LO ? DS_VEXP_LO : x > DS_VEXP_HI ? DS_VEXP_HI : x;
    const float fx = x * 1.44269504088896341f + 0.5f;
    float n = (float)(int32_t)fx; /* floor: truncation, then one down for negatives */
    if (n > fx) n -= 1.0f;
    DS_VEXP_BODY(float, x, n);
    const int32_t bits = ((int32_t)n + 127) << 23;
    float p2;
    memcpy(&p2, &bits, sizeof p2);
    return y * p2;
}

/* The vector forms, stamped out for W = 4 and 8 lanes (VF, VI the vector
 * types); each step of the array loops covers 8 elements: 8 / W vectors.
 *   ds_vW_exp(*px)           *px = exp(*px) lane by lane
 *   ds_vW_exp_sub_sum(x,n,s) x[j] = exp(x[j] - s), j < n; returns the sum
 *   ds_vW_max(x, n)          max of x[0..n) (n >= 1, no NaN: the order does
 *                            not matter, so it is the scalar loop's value)
 *   ds_vW_scale(x, n, s)     x[j] *= s
 *   ds_vW_silu_mul(o,g,u,n)  o[i] = g[i] / (1 + exp(-g[i])) * u[i] */
#define DS_VEXP_WIDTH(W, VF, VI)                                                                                        \
    DS_VINLINE void ds_v##W##_exp(VF *px)                                                                              \
    {                                                                                                                  \
        VF x = *px, lo = x * 0.0f, hi = lo, one = lo;                                                                  \
        for (int k = 0; k < W; k++) lo[k] = DS_VEXP_LO, hi[k] = DS_VEXP_HI, one[k] = 1.0f;                             \
        VI m = x < lo; /* lanes: -1 where true */                                                                      \
        x = (VF)(((VI)lo & m) | ((VI)x & ~m));                                                                         \
        m = x > hi;                                                                                                    \
        x = (VF)(((VI)hi & m) | ((VI)x & ~m));                                                                         \
        const VF fx = x * 1.44269504088896341f + 0.5f;                                                                 \
        VF n = __builtin_convertvector(__builtin_convertvector(fx, VI), VF);                                           \
        n -= (VF)((VI)one & (n > fx));                                                                                 \
        DS_VEXP_BODY(VF, x, n);                                                                                        \
        const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;                                                  \
        *px = y * (VF)bits;                                                                                            \
    }                                                                                                                  \
    DS_VINLINE float ds_v##W##_exp_sub_sum(float *x, int64_t n, float sub)                                             \
    {                                                                                                                  \
        VF acc[8 / W];                                                                                                 \
        memset(acc, 0, sizeof acc);                                                                                    \
        int64_t j = 0;                                                                                                 \
        for (; j + 8 <= n; j += 8)                                                                                     \
            for (int h = 0; h < 8 / W; h++) {                                                                          \
                VF v;                                                                                                  \
                memcpy(&v, x + j + h * W, sizeof v);                                                                   \
                v -= sub;                                                                                              \
                ds_v##W##_exp(&v);                                                                                     \
                memcpy(x + j + h * W, &v, sizeof v);                                                                   \
                acc[h] += v;                                                                                           \
            }                                                                                                          \
        float l[8];                                                                                                    \
        memcpy(l, acc, sizeof l);                                                                                      \
        float sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));                                 \
        for (; j < n; j++) sum += (x[j] = ds_expf1(x[j] - sub));                                                       \
        return sum;                                                                                                    \
    }                                                                                                                  \
    DS_VINLINE float ds_v##W##_max(const float *x, int64_t n)                                                          \
    {                                                                                                                  \
        float mx = x[0];                                                                                               \
        int64_t j = 0;                                                                                                 \
        if (n >= 8) {                                                                                                  \
            VF m[8 / W];                                                                                               \
            memcpy(m, x, sizeof m);                                                                                    \
            for (j = 8; j + 8 <= n; j += 8)                                                                            \
                for (int h = 0; h < 8 / W; h++) {                                                                      \
                    VF v;                                                                                              \
                    memcpy(&v, x + j + h * W, sizeof v);                                                               \
                    const VI gt = v > m[h];                                                                            \
                    m[h] = (VF)(((VI)v & gt) | ((VI)m[h] & ~gt));                                                      \
                }                                                                                                      \
            float l[8];                                                                                                \
            memcpy(l, m, sizeof l);                                                                                    \
            for (int k = 1; k < 8; k++) mx = l[k] > mx ? l[k] : mx;                                                    \
            mx = l[0] > mx ? l[0] : mx;                                                                                \
        }                                                                                                              \
        for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;                                                                 \
        return mx;                                                                                                     \
    }                                                                                                                  \
    DS_VINLINE void ds_v##W##_scale(float *x, int64_t n, float s)                                                      \
    {                                                                                                                  \
        int64_t j = 0;                                                                                                 \
        for (; j + W <= n; j += W) {                                                                                   \
            VF v;                                                                                                      \
            memcpy(&v, x + j, sizeof v);                                                                               \
            v *= s;                                                                                                    \
            memcpy(x + j, &v, sizeof v);                                                                               \
        }                                                                                                              \
        for (; j < n; j++) x[j] *= s;                                                                                  \
    }                                                                                                                  \
    DS_VINLINE void ds_v##W##_silu_mul(float *out, const float *g, const float *u, int64_t n)                          \
    {                                                                                                                  \
        int64_t i = 0;                                                                                                 \
        for (; i + W <= n; i += W) {                                                                                   \
            VF a, b;                                                                                                   \
            memcpy(&a, g + i, sizeof a);                                                                               \
            memcpy(&b, u + i, sizeof b);                                                                               \
            VF e = -a;                                                                                                 \
            ds_v##W##_exp(&e);                                                                                         \
            const VF r = a / (1.0f + e) * b;                                                                           \
            memcpy(out + i, &r, sizeof r);                                                                             \
        }                                                                                                              \
        for (; i < n; i++) out[i] = g[i] / (1.0f + ds_expf1(-g[i])) * u[i];                                            \
    }

DS_VEXP_WIDTH(4, ds_v4f, ds_v4i)
DS_VEXP_WIDTH(8, ds_v8f, ds_v8i)
#endif
