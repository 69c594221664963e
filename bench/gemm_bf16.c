/* GFLOP/s of the bf16-weight products (kernels/cpu/gemm_bf16.h) against
 * cblas_sgemm on f32 weights (the machine's sgemm figure, measured in the
 * same run) and OpenBLAS's cblas_sbgemm (bf16 x bf16; x converted to bf16
 * first, that conversion timed apart), the vdpbf16ps product of mode
 * DS_GEMM_DP (src/gemm_w.h: packing of x included, on THREADS threads), and
 * the one-token matvec in GB/s of weights read.
 *   gemm_bf16 [THREADS [N IN OUT]]   (default 1 thread; shapes of a 7B layer)
 *   gemm_bf16 THREADS peak           the machine's peaks: a tight loop of
 *                                    independent vdpbf16ps (and of vfmadd231ps)
 *                                    zmm on each of THREADS threads, GFLOP/s
 *                                    and FLOP/cycle (the clock from a chain of
 *                                    dependent 1-cycle adds on one thread)
 * One line per (case, shape): name, N, in, out, GFLOP/s (or GB/s), ratio to
 * sgemm. Best of 9 runs after a warm-up; with 1 thread the thread's CPU
 * time is measured (see now()). */
#include "config.h"
#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif
#include "kernels/cpu/gemm_bf16.h"
#include "src/gemm_w.h"
#include "kernels/half.h"
#include "src/ds.h"

/* Debian 12's OpenBLAS 0.3.21 is built without BUILD_BFLOAT16: its cblas.h
 * declares cblas_sbgemm and friends but the library does not export them.
 * Looked up at run time, so that the benchmark runs either way and
 * measures them where a library has them. */
typedef void (*sbgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
                          float, const bfloat16 *, blasint, const bfloat16 *, blasint, float, float *, blasint);
typedef void (*sbgemv_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, blasint, blasint, float, const bfloat16 *, blasint,
                          const bfloat16 *, blasint, float, float *, blasint);
static sbgemm_fn p_sbgemm;
static sbgemv_fn p_sbgemv;

typedef struct {
    size_t N, in, out;
    float *x, *wf, *y, *scratch;
    uint16_t *wb, *xb;
    uint64_t *bits; /* a 1-bit delta [out, in/64 words] for the decomposition */
} shape;

/* BitDelta's decomposition on one token, the alternative to adding the delta
 * into the weights (docs/model.md): y += g * (x . (2B - 1)) for a row-major
 * bit matrix B, as g * (2 * sum_{k: b=1} x_k - sum_k x_k), one masked add of
 * 16 activations per 16 bits (in a multiple of 16). */
#ifdef __x86_64__
__attribute__((target("avx512f,avx512bw,avx512dq"))) static void bit_gemv(size_t in, size_t out,
                                                                          const uint64_t *bits, const float *x,
                                                                          float g, float *y)
{
    const size_t wpr = (in + 63) / 64;
    float sx = 0;
    for (size_t k = 0; k < in; k++) sx += x[k];
    for (size_t o = 0; o < out; o++) {
        __m512 acc = _mm512_setzero_ps();
        const uint64_t *b = bits + o * wpr;
        for (size_t k = 0; k < in; k += 16)
            acc = _mm512_mask_add_ps(acc, (__mmask16)(b[k / 64] >> (k % 64)), acc, _mm512_loadu_ps(x + k));
        y[o] += g * (2 * _mm512_reduce_add_ps(acc) - sx);
    }
}
#else
static void bit_gemv(size_t in, size_t out, const uint64_t *bits, const float *x, float g, float *y)
{
    const size_t wpr = (in + 63) / 64;
    for (size_t o = 0; o < out; o++) {
        float s = 0;
        for (size_t k = 0; k < in; k++) s += (bits[o * wpr + k / 64] >> (k % 64) & 1) ? x[k] : -x[k];
        y[o] += g * s;
    }
}
#endif

enum { C_SGEMM, C_PANEL, C_DIRECT, C_SBGEMM, C_X2BF16, C_DPBF16, C_GEMV_F32, C_GEMV_BF16, C_SBGEMV, C_BITDELTA };
static const char *const names[] = {"sgemm_f32",      "bf16_panel_sgemm", "bf16_direct",     "sbgemm_bf16xbf16",
                                    "x_to_bf16",      "dpbf16_gemm_w",       "sgemv_f32",       "gemv_bf16_direct",
                                    "sbgemv_bf16xbf16", "gemv_bf16+1bit"};

static void run(shape *s, int c)
{
    const int N = (int)s->N, in = (int)s->in, out = (int)s->out;
    switch (c) {
    case C_SGEMM:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, s->x, in, s->wf, in, 0.0f, s->y, out);
        break;
    case C_PANEL: ds_gemm_xwt(DS_KDT_BF16, s->N, s->in, s->out, s->x, s->wb, 0, s->y, s->scratch, DS_GEMM_SCRATCH_FLOATS); break;
    case C_DIRECT: ds_gemm_xwt_direct(DS_KDT_BF16, s->N, s->in, s->out, s->x, s->wb, 0, s->y); break;
    case C_SBGEMM:
        p_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, (bfloat16 *)s->xb, in,
                     (bfloat16 *)s->wb, in, 0.0f, s->y, out);
        break;
    case C_X2BF16:
        for (size_t i = 0; i < s->N * s->in; i++) s->xb[i] = ds_f32_to_bf16(s->x[i]);
        break;
    case C_DPBF16:
        ds_gemm_set_mode(DS_GEMM_DP);
        ds_gemm_xwt(DS_KDT_BF16, s->N, s->in, s->out, s->x, s->wb, 0, s->y, s->scratch, DS_GEMM_SCRATCH_FLOATS);
        ds_gemm_set_mode(DS_GEMM_EXACT);
        break;
    case C_GEMV_F32: cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, s->wf, in, s->x, 1, 0.0f, s->y, 1); break;
    case C_GEMV_BF16: ds_gemv_w(DS_KDT_BF16, s->in, s->out, s->wb, s->x, 0, s->y); break;
    case C_SBGEMV:
        p_sbgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, (bfloat16 *)s->wb, in, (bfloat16 *)s->xb, 1, 0.0f,
                     s->y, 1);
        break;
    case C_BITDELTA: /* base matvec + the 1-bit delta kept apart */
        ds_gemv_w(DS_KDT_BF16, s->in, s->out, s->wb, s->x, 0, s->y);
        bit_gemv(s->in, s->out, s->bits, s->x, 1e-3f, s->y);
        break;
    }
}

/* With one thread the calling thread's CPU time (clock_gettime
 * CLOCK_THREAD_CPUTIME_ID): on a machine shared with other jobs it leaves
 * out the time slices given to them; with more threads wall time. */
static int use_cpu_time;
static double now(void)
{
    if (!use_cpu_time) return ds_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double best_time(shape *s, int c)
{
    run(s, c);
    double best = 1e30;
    for (int r = 0; r < 9; r++) {
        double t0 = now();
        run(s, c);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

static void bench_shape(size_t N, size_t in, size_t out)
{
    shape s = {.N = N, .in = in, .out = out};
    s.x = malloc(N * in * 4);
    s.wf = malloc(out * in * 4);
    s.y = malloc(N * out * 4);
    s.scratch = malloc(DS_GEMM_SCRATCH_FLOATS * 4);
    s.wb = malloc(out * in * 2);
    s.xb = malloc(N * in * 2);
    s.bits = malloc(out * ((in + 63) / 64) * 8);
    uint64_t r = 1;
    for (size_t i = 0; i < out * ((in + 63) / 64); i++) s.bits[i] = (r = r * 6364136223846793005ull + 1);
    for (size_t i = 0; i < out * in; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        s.wb[i] = ds_f32_to_bf16((float)((double)(r >> 11) * 0x1p-53 - 0.5) * 0.04f);
        s.wf[i] = ds_bf16_to_f32(s.wb[i]);
    }
    for (size_t i = 0; i < N * in; i++) s.x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    run(&s, C_X2BF16);
    const double flops = 2.0 * N * in * out;
    if (N == 1) {
        const double t32 = best_time(&s, C_GEMV_F32);
        const int cs[] = {C_GEMV_F32, C_GEMV_BF16, C_SBGEMV, C_BITDELTA};
        for (int k = 0; k < 4; k++) {
            if (cs[k] == C_SBGEMV && !p_sbgemv) {
                printf("%-18s unavailable (this OpenBLAS exports no cblas_sbgemv)\n", names[cs[k]]);
                continue;
            }
            const double t = k ? best_time(&s, cs[k]) : t32;
            const double bytes = (double)out * in * (cs[k] == C_GEMV_F32 ? 4 : 2) +
                                 (cs[k] == C_BITDELTA ? (double)out * ((in + 63) / 64) * 8 : 0);
            printf("%-18s N=%-5zu in=%-6zu out=%-6zu %8.2f GB/s of weights %8.3f ms  speedup_vs_sgemv=%.2f\n",
                   names[cs[k]], N, in, out, bytes / t / 1e9, t * 1e3, t32 / t);
        }
    } else {
        const double t32 = best_time(&s, C_SGEMM);
        const int cs[] = {C_SGEMM, C_PANEL, C_DIRECT, C_SBGEMM, C_X2BF16, C_DPBF16};
        for (int k = 0; k < 6; k++) {
            if (cs[k] == C_DIRECT && N > 64) continue; /* the direct kernel is for few rows */
            if (cs[k] == C_SBGEMM && !p_sbgemm) {
                printf("%-18s unavailable (this OpenBLAS exports no cblas_sbgemm)\n", names[cs[k]]);
                continue;
            }
            if (cs[k] == C_DPBF16 && !ds_gemm_dp_available()) {
                printf("%-18s unavailable (no avx512_bf16, or DS_SIMD below avx512)\n", names[cs[k]]);
                continue;
            }
            const double t = k ? best_time(&s, cs[k]) : t32;
            printf("%-18s N=%-5zu in=%-6zu out=%-6zu %8.2f GFLOP/s %8.3f ms  vs_sgemm=%.2f\n", names[cs[k]], N, in,
                   out, cs[k] == C_X2BF16 ? 0.0 : flops / t / 1e9, t * 1e3, t32 / t);
        }
    }
    fflush(stdout);
    free(s.x), free(s.wf), free(s.y), free(s.scratch), free(s.wb), free(s.xb), free(s.bits);
}

/* ---- peaks: 24 independent accumulators, one instruction each per round */
#ifdef __x86_64__
__attribute__((target("avx512f,avx512bf16"), noinline)) static float dp_loop(long rounds)
{
    __m512 a[24];
    for (int i = 0; i < 24; i++) a[i] = _mm512_setzero_ps();
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), w = (__m512bh)_mm512_set1_epi32(0x3a803a80);
    for (long r = 0; r < rounds; r++) {
#pragma GCC unroll 24
        for (int j = 0; j < 24; j++) a[j] = _mm512_dpbf16_ps(a[j], x, w);
        __asm__ volatile("" : "+v"(x)); /* not hoisted */
    }
    for (int i = 1; i < 24; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx512f,fma"), noinline)) static float fma_loop(long rounds)
{
    __m512 a[24];
    for (int i = 0; i < 24; i++) a[i] = _mm512_setzero_ps();
    __m512 x = _mm512_set1_ps(1.0f), w = _mm512_set1_ps(1e-3f);
    for (long r = 0; r < rounds; r++) {
#pragma GCC unroll 24
        for (int j = 0; j < 24; j++) a[j] = _mm512_fmadd_ps(x, w, a[j]);
        __asm__ volatile("" : "+v"(x));
    }
    for (int i = 1; i < 24; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    return _mm512_reduce_add_ps(a[0]);
}

/* 4 dependent adds a round: 4 cycles */
__attribute__((noinline)) static long add_chain(long rounds)
{
    long v = 0;
    for (long r = 0; r < rounds; r++) __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(v));
    return v;
}

typedef struct {
    int dp;
    long rounds;
    double sec;
} peak_job;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *peak_run(void *arg)
{
    peak_job *j = arg;
    volatile float sink;
    double t0 = thread_cpu();
    sink = j->dp ? dp_loop(j->rounds) : fma_loop(j->rounds);
    (void)sink;
    j->sec = thread_cpu() - t0;
    return NULL;
}

/* GFLOP/s of the loops on T threads at once (each thread's CPU time, so
 * that time slices given to other jobs do not count), best of 5. */
static double peak(int dp, int T)
{
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        peak_job j[64];
        pthread_t th[64];
        for (int t = 0; t < T; t++) j[t] = (peak_job){dp, 4000000, 0};
        for (int t = 1; t < T; t++) pthread_create(&th[t], NULL, peak_run, &j[t]);
        peak_run(&j[0]);
        double g = 0;
        for (int t = 0; t < T; t++) {
            if (t) pthread_join(th[t], NULL);
            g += 24.0 * (dp ? 64 : 32) * (double)j[t].rounds / j[t].sec / 1e9;
        }
        best = g > best ? g : best;
    }
    return best;
}

static int peaks(int T)
{
    if (T > 64) T = 64;
    if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512f")) {
        printf("vdpbf16ps_peak unavailable (no avx512_bf16)\n");
        return 0;
    }
    peak(1, 1); /* warm the clock up */
    double ghz = 0;
    for (int rep = 0; rep < 5; rep++) {
        const long rounds = 50000000;
        double t0 = thread_cpu();
        volatile long v = add_chain(rounds);
        (void)v;
        const double g = 4.0 * (double)rounds / (thread_cpu() - t0) / 1e9;
        ghz = g > ghz ? g : ghz;
    }
    const double dp = peak(1, T), fm = peak(0, T);
    printf("clock_ghz=%.2f (one thread, dependent adds)\n", ghz);
    printf("vdpbf16ps_peak threads=%d %.1f GFLOP/s  %.1f FLOP/cycle/core\n", T, dp, dp / ghz / T);
    printf("fma_f32_peak   threads=%d %.1f GFLOP/s  %.1f FLOP/cycle/core\n", T, fm, fm / ghz / T);
    return 0;
}
#else
static int peaks(int T)
{
    (void)T;
    printf("vdpbf16ps_peak unavailable (not x86-64)\n");
    return 0;
}
#endif

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    use_cpu_time = threads <= 1;
    openblas_set_num_threads(threads < 1 ? 1 : threads);
    p_sbgemm = (sbgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    p_sbgemv = (sbgemv_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemv");
    printf("# threads=%d openblas_core=%s\n", threads, openblas_get_corename());
    if (argc == 3 && strcmp(argv[2], "peak") == 0) return peaks(threads < 1 ? 1 : threads);
    if (argc == 5) {
        bench_shape((size_t)atol(argv[2]), (size_t)atol(argv[3]), (size_t)atol(argv[4]));
        return 0;
    }
    const size_t shapes[][3] = {{512, 4096, 4096}, {512, 4096, 11008}, {64, 4096, 4096}, {16, 4096, 4096},
                                {4, 4096, 4096},   {1, 4096, 4096},    {1, 4096, 11008}, {1, 11008, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_shape(shapes[i][0], shapes[i][1], shapes[i][2]);
    return 0;
}
