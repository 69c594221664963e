/* Products with weights in their stored precision (src/gemm_w.h): f32
 * weights to BLAS, f16 / bf16 weights in panels converted to f32 (the
 * kernels of kernels/cpu/gemm_bf16.h) for cblas_sgemm, or the direct kernel;
 * bf16 weights in mode DS_GEMM_DP the vdpbf16ps kernel, on the threads
 * OpenBLAS is set to. */
#include "config.h"
#include "src/gemm_w.h"
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

/* ---- the mode: DS_GEMM_BF16 read once, or set by ds_gemm_set_mode */
static int g_mode = -1; /* -1: not resolved yet */
static pthread_once_t g_mode_once = PTHREAD_ONCE_INIT;

static void mode_from_env(void)
{
    const char *e = getenv("DS_GEMM_BF16");
    if (g_mode < 0) g_mode = e && strcmp(e, "dp") == 0 && ds_gemm_dp_available() ? DS_GEMM_DP : DS_GEMM_EXACT;
}

ds_gemm_mode ds_gemm_get_mode(void)
{
    pthread_once(&g_mode_once, mode_from_env);
    return (ds_gemm_mode)__atomic_load_n(&g_mode, __ATOMIC_RELAXED);
}

int ds_gemm_set_mode(ds_gemm_mode m)
{
    pthread_once(&g_mode_once, mode_from_env);
    if (m == DS_GEMM_DP && !ds_gemm_dp_available()) return -1;
    __atomic_store_n(&g_mode, (int)m, __ATOMIC_RELAXED);
    return 0;
}

const char *ds_gemm_mode_name(ds_gemm_mode m) { return m == DS_GEMM_DP ? "dp" : "exact"; }

static int g_threads; /* 0: OpenBLAS's count */
void ds_gemm_set_threads(int n) { __atomic_store_n(&g_threads, n < 0 ? 0 : n, __ATOMIC_RELAXED); }

/* ---- the vdpbf16ps product on T threads, each a slice of out */
typedef struct {
    size_t N, in, out, o0, o1; /* this thread's rows of W: o0..o1 */
    size_t r0, r1;             /* and rows of x to pack: r0..r1 (multiples of 16 but the end) */
    const float *x;
    char *xp;
    const uint16_t *W;
    float beta, *y;
    void *wbuf;
    pthread_barrier_t *packed; /* NULL with one thread */
} dp_job;

static void *dp_slice(void *arg)
{
    const dp_job *j = arg;
    if (j->r1 > j->r0) ds_gemm_dp_pack_x(j->r1 - j->r0, j->in, j->x + j->r0 * j->in, j->xp + ds_gemm_dp_xbytes(j->r0, j->in));
    if (j->packed) pthread_barrier_wait(j->packed);
    if (j->o1 > j->o0)
        ds_gemm_dp_run(j->N, j->in, j->o1 - j->o0, j->xp, j->W + j->o0 * j->in, j->beta, j->y + j->o0, j->out,
                       j->wbuf);
    return NULL;
}

static char *align64(void *p) { return (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

#define DP_MAX_THREADS 16
/* Below this many multiply-adds one thread (a thread start costs ~20 us). */
#define DP_THREAD_MACS ((size_t)1 << 24)

static void xwt_dp(size_t N, size_t in, size_t out, const float *x, const uint16_t *W, float beta, float *y,
                   float *scratch, size_t scratch_n)
{
    int T = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    if (T == 0) T = openblas_get_num_threads();
    if (T > DP_MAX_THREADS) T = DP_MAX_THREADS;
    if (T < 1 || N * in * out < DP_THREAD_MACS) T = 1;
    if ((size_t)T > (out + 15) / 16) T = (int)((out + 15) / 16);
    const size_t wb = (ds_gemm_dp_wbytes() + 63) / 64 * 64, row = ds_gemm_dp_xbytes(16, in) / 16;
    /* rows of x per chunk: what the scratch holds beside the W buffers, whole panels of 16 */
    size_t have = scratch ? scratch_n * sizeof(float) : 0, R = 0;
    if (have > (size_t)T * wb + 64) R = (have - (size_t)T * wb - 64) / row / 16 * 16;
    void *own = NULL;
    char *buf;
    if (R >= 32 || R >= N) {
        buf = align64(scratch);
    } else { /* too small a scratch (the engine's 4 MiB always suffices) */
        R = N < 256 ? (N + 15) / 16 * 16 : 256;
        own = ds_malloc((size_t)T * wb + R * row + 64);
        buf = align64(own);
    }
    char *xp = buf + (size_t)T * wb;
    for (size_t n0 = 0; n0 < N; n0 += R) {
        const size_t nb = N - n0 < R ? N - n0 : R;
        dp_job jobs[DP_MAX_THREADS];
        pthread_t th[DP_MAX_THREADS];
        pthread_barrier_t packed;
        const int par = T > 1 && pthread_barrier_init(&packed, NULL, (unsigned)T) == 0;
        /* slices of out in multiples of 16; panels of x shared out for packing */
        const size_t per = ((out + (size_t)T - 1) / (size_t)T + 15) / 16 * 16;
        const size_t pp = ((nb + 15) / 16 + (size_t)T - 1) / (size_t)T * 16;
        for (int t = 0; t < T; t++) {
            const size_t a = (size_t)t * per < out ? (size_t)t * per : out, b = a + per < out ? a + per : out;
            const size_t ra = (size_t)t * pp < nb ? (size_t)t * pp : nb, rb = ra + pp < nb ? ra + pp : nb;
            jobs[t] = (dp_job){nb, in, out, a, b, ra, rb, x + n0 * in, xp, W, beta, y + n0 * out,
                               buf + (size_t)t * wb, par ? &packed : NULL};
        }
        if (par) {
            for (int t = 1; t < T; t++) /* the others wait for it at the barrier: no way on without it */
                if (pthread_create(&th[t], NULL, dp_slice, &jobs[t]) != 0) ds_die("gemm_w: cannot start a thread");
            dp_slice(&jobs[0]);
            for (int t = 1; t < T; t++) pthread_join(th[t], NULL);
            pthread_barrier_destroy(&packed);
        } else { /* one thread, or no barrier to be had: the slices in turn */
            ds_gemm_dp_pack_x(nb, in, x + n0 * in, xp);
            for (int t = 0; t < T; t++) jobs[t].r0 = jobs[t].r1 = 0, dp_slice(&jobs[t]);
        }
    }
    free(own);
}

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
    if (dt == DS_KDT_BF16 && N >= DS_GEMM_DIRECT_N && ds_gemm_get_mode() == DS_GEMM_DP) {
        xwt_dp(N, in, out, x, W, beta, y, scratch, scratch_n);
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
