/* Products with weights in their stored precision (src/gemm_w.h): f32
 * weights to BLAS, f16 / bf16 weights in panels converted to f32 (the
 * kernels of kernels/cpu/gemm_bf16.h) for cblas_sgemm, or the direct kernel;
 * bf16 weights in mode DS_GEMM_DP the vdpbf16ps kernel, on the threads
 * OpenBLAS is set to. */
#include "config.h"
#include "src/gemm_w.h"
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
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
    if (g_mode < 0) g_mode = e && strcmp(e, "dp") == 0 ? DS_GEMM_DP : DS_GEMM_EXACT;
}

/* the mode asked for, where the kernel variant in force can run it */
ds_gemm_mode ds_gemm_get_mode(void)
{
    pthread_once(&g_mode_once, mode_from_env);
    const int m = __atomic_load_n(&g_mode, __ATOMIC_RELAXED);
    return m == DS_GEMM_DP && ds_gemm_dp_available() ? DS_GEMM_DP : DS_GEMM_EXACT;
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

#define POOL_MAX 16
int ds_gemm_threads(void)
{
    int T = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    if (T == 0) T = openblas_get_num_threads();
    return T < 1 ? 1 : T > POOL_MAX ? POOL_MAX : T;
}

static size_t esize(ds_kdtype dt) { return dt == DS_KDT_F32 ? 4 : 2; }

/* ---- a small pool of threads for the DP product, started on first use
 * and kept for the process (a thread start and its first wake-up cost
 * ~50-100 us here, as much as a whole k or v product of a 1B model's
 * prefill). ds_gemm_parallel runs fn(arg, t, T) for t = 0..T-1, t = 0 on
 * the caller; workers spin a short while after a job (the next product
 * usually follows within microseconds) and then sleep on a condition
 * variable. One parallel call at a time: a concurrent caller (another
 * thread of the process) runs its job alone, t = 0 of T = 1. */
#define POOL_SPIN 2000 /* polls (pause: ~65 cycles on Zen; ~40 us) before a worker sleeps */

static struct {
    pthread_mutex_t m, call;
    pthread_cond_t go, done;
    int workers;           /* started */
    unsigned long gen;     /* job number, under m (read by spinning workers atomically) */
    int pending;           /* workers yet to finish the current job, under m */
    void (*fn)(void *, int, int);
    void *arg;
    int T;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, NULL, NULL, 0};

static unsigned long pool_start_gen[POOL_MAX]; /* a new worker's last job seen, set before its start */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *pool_worker(void *arg)
{
    const int id = (int)(intptr_t)arg; /* 1.. */
    unsigned long seen = pool_start_gen[id]; /* the job being posted when it started is the next one */
    for (;;) {
        for (int i = 0; i < POOL_SPIN && __atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) == seen; i++) cpu_relax();
        pthread_mutex_lock(&pool.m);
        while (pool.gen == seen) pthread_cond_wait(&pool.go, &pool.m);
        seen = pool.gen;
        void (*fn)(void *, int, int) = pool.fn;
        void *a = pool.arg;
        const int T = pool.T;
        pthread_mutex_unlock(&pool.m);
        if (id < T) fn(a, id, T);
        pthread_mutex_lock(&pool.m);
        if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_ACQ_REL) == 0) pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.m);
    }
    return NULL;
}

/* In a child of fork() the workers are gone: start afresh. */
static void pool_child(void)
{
    pthread_mutex_init(&pool.m, NULL);
    pthread_mutex_init(&pool.call, NULL);
    pthread_cond_init(&pool.go, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.workers = 0, pool.pending = 0;
}
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_init(void) { pthread_atfork(NULL, NULL, pool_child); }

int ds_gemm_parallel(void (*fn)(void *, int, int), void *arg, int T)
{
    if (T > POOL_MAX) T = POOL_MAX;
    if (T <= 1 || pthread_mutex_trylock(&pool.call) != 0) {
        fn(arg, 0, 1);
        return 1;
    }
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.m);
    while (pool.workers < T - 1) { /* new workers take this job too */
        pthread_t th;
        pool_start_gen[pool.workers + 1] = pool.gen;
        if (pthread_create(&th, NULL, pool_worker, (void *)(intptr_t)(pool.workers + 1)) != 0) break;
        pthread_detach(th);
        pool.workers++;
    }
    const int ran = pool.workers + 1 < T ? pool.workers + 1 : T;
    pool.fn = fn, pool.arg = arg, pool.T = ran;
    __atomic_store_n(&pool.pending, pool.workers, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.gen, pool.gen + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.m);
    fn(arg, 0, ran);
    for (int i = 0; i < POOL_SPIN && __atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0; i++) cpu_relax();
    pthread_mutex_lock(&pool.m);
    while (__atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&pool.done, &pool.m);
    pthread_mutex_unlock(&pool.m);
    pthread_mutex_unlock(&pool.call);
    return ran;
}

/* ---- the vdpbf16ps product on T threads: each packs its share of x's
 * panels, all meet (a spinning barrier: they are all running), then each
 * computes its slice of out */
typedef struct {
    size_t N, in, out;
    const float *x;
    char *xp, *wbufs; /* packed x; T W buffers of wb bytes */
    size_t wb;
    const uint16_t *W;
    float beta, *y;
    int arrived; /* at the barrier, atomically */
} dp_job;

static void dp_part(void *arg, int t, int T)
{
    dp_job *j = arg;
    const size_t panels = (j->N + 15) / 16, pp = (panels + (size_t)T - 1) / (size_t)T * 16;
    const size_t r0 = (size_t)t * pp < j->N ? (size_t)t * pp : j->N, r1 = r0 + pp < j->N ? r0 + pp : j->N;
    if (r1 > r0) ds_gemm_dp_pack_x(r1 - r0, j->in, j->x + r0 * j->in, j->xp + ds_gemm_dp_xbytes(r0, j->in));
    if (T > 1) {
        __atomic_add_fetch(&j->arrived, 1, __ATOMIC_ACQ_REL);
        for (unsigned i = 0; __atomic_load_n(&j->arrived, __ATOMIC_ACQUIRE) < T; i++)
            if (i < 100000) cpu_relax();
            else sched_yield(); /* a participant without a core: let it run */
    }
    /* slices of out in multiples of 16 */
    const size_t per = ((j->out + (size_t)T - 1) / (size_t)T + 15) / 16 * 16;
    const size_t o0 = (size_t)t * per < j->out ? (size_t)t * per : j->out, o1 = o0 + per < j->out ? o0 + per : j->out;
    if (o1 > o0)
        ds_gemm_dp_run(j->N, j->in, o1 - o0, j->xp, j->W + o0 * j->in, j->beta, j->y + o0, j->out,
                       j->wbufs + (size_t)t * j->wb);
}

static char *align64(void *p) { return (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Below this many multiply-adds one thread. */
#define DP_THREAD_MACS ((size_t)1 << 24)

static void xwt_dp(size_t N, size_t in, size_t out, const float *x, const uint16_t *W, float beta, float *y,
                   float *scratch, size_t scratch_n)
{
    int T = ds_gemm_threads();
    if (N * in * out < DP_THREAD_MACS) T = 1;
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
    for (size_t n0 = 0; n0 < N; n0 += R) {
        const size_t nb = N - n0 < R ? N - n0 : R;
        dp_job j = {nb, in, out, x + n0 * in, buf + (size_t)T * wb, buf, wb, W, beta, y + n0 * out, 0};
        ds_gemm_parallel(dp_part, &j, T);
    }
    free(own);
}

void ds_gemm_xwt(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                 float *y, float *scratch, size_t scratch_n)
{
    if (N == 0 || out == 0) return;
    if (dt == DS_KDT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, x, (int)in, W, (int)in,
                    beta, y, (int)out);
        return;
    }
    if (dt == DS_KDT_BF16 && N >= DS_GEMM_DIRECT_N && in > 0 && ds_gemm_get_mode() == DS_GEMM_DP) {
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

/* ---- coded weights: panels of W = W_b + g (2b - 1) built in f32 */

/* Rows [o0, o0 + p) of the coded W into dst [p, in]. */
static void coded_panel(ds_kdtype dt, size_t in, const void *W, const ds_wcode *c, size_t o0, size_t p, float *dst)
{
    const size_t words = ds_bitpack_words(in);
    ds_bitpack_apply(DS_KDT_F32, dst, dt, (const char *)W + o0 * in * esize(dt), c->bits + o0 * words, p, in,
                     c->kind, c->kind == DS_SCALE_ROW ? c->scale + o0 : c->scale);
}

/* The scratch of a coded product: the caller's, or one for the call. */
static float *coded_scratch(size_t in, size_t out, float *scratch, size_t *scratch_n, float **own)
{
    *own = NULL;
    if (scratch && *scratch_n >= in) return scratch;
    size_t rows = DS_GEMM_SCRATCH_FLOATS / in;
    if (rows < 1) rows = 1;
    if (rows > out) rows = out;
    *scratch_n = rows * in;
    return *own = ds_malloc(*scratch_n * sizeof(float));
}

/* The coded products by panels of rows [o0, o0 + p) of W: y = beta*y +
 * a . W^T (xw 0: a = x [N, in], y [N, out]), or y = beta*y + a . W (xw 1:
 * a = dy [N, out], y = dx [N, in], the panels' partial sums added). */
static void coded_product(int xw, ds_kdtype dt, size_t N, size_t in, size_t out, const float *a, const void *W,
                          const ds_wcode *c, float beta, float *y, float *scratch, size_t scratch_n)
{
    const size_t k = in ? in : 1;
    float *own, *s = coded_scratch(k, out ? out : 1, scratch, &scratch_n, &own);
    const size_t P = scratch_n / k;
    for (size_t o0 = 0; o0 < out; o0 += P) {
        const size_t p = out - o0 < P ? out - o0 : P;
        coded_panel(dt, in, W, c, o0, p, s);
        if (!xw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)p, (int)in, 1.0f, a, (int)in, s, (int)in,
                        beta, y + o0, (int)out);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)p, 1.0f, a + o0, (int)out, s,
                        (int)in, o0 == 0 ? beta : 1.0f, y, (int)in);
    }
    if (xw && out == 0 && beta == 0)
        for (size_t i = 0; i < N * in; i++) y[i] = 0;
    free(own);
}

void ds_gemm_xwt_coded(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                       const ds_wcode *c, float beta, float *y, float *scratch, size_t scratch_n)
{
    if (!c) ds_gemm_xwt(dt, N, in, out, x, W, beta, y, scratch, scratch_n);
    else if (N && out) coded_product(0, dt, N, in, out, x, W, c, beta, y, scratch, scratch_n);
}

void ds_gemm_xw_coded(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W,
                      const ds_wcode *c, float beta, float *dx, float *scratch, size_t scratch_n)
{
    if (!c) ds_gemm_xw(dt, N, in, out, dy, W, beta, dx, scratch, scratch_n);
    else if (N && in) coded_product(1, dt, N, in, out, dy, W, c, beta, dx, scratch, scratch_n);
}
