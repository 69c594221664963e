/* Every CUDA kernel against its naive CPU reference (ref.c): sign bits,
 * |delta| sums, apply/expand outputs and Hamming counts bit-exact; trimmed
 * means and the batched 1-bit product by normalised MSE < 1e-7.
 * Exits 77 (skipped) when there is no GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cuda/ds_cuda.h"
#include "kernels/half.h"
#include "tests/gpu/cuda_check.h"
#include "tests/gpu/ref.h"

static int failures;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static void check(int ok, const char *what)
{
    if (!ok) {
        printf("FAIL %s\n", what);
        failures++;
    }
}

static uint64_t rnd64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float rndf(void) { return (float)((double)(rnd64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}
static void *dev_alloc(size_t n)
{
    void *p;
    CUDA_OK(cudaMalloc(&p, n ? n : 1));
    return p;
}
static void *dev_from(const void *h, size_t n)
{
    void *p = dev_alloc(n);
    CUDA_OK(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice));
    return p;
}
static void to_host(void *h, const void *d, size_t n)
{
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
}
static size_t esize(ds_kdtype dt) { return dt == DS_KDT_F32 ? 4 : 2; }
static const char *dt_name(ds_kdtype dt) { return dt == DS_KDT_F32 ? "f32" : dt == DS_KDT_F16 ? "f16" : "bf16"; }

/* Random packed bits with zero padding after the last column. */
static void rand_bits(uint64_t *bits, size_t rows, size_t cols)
{
    size_t words = ds_bitpack_words(cols);
    for (size_t i = 0; i < rows; i++)
        for (size_t w = 0; w < words; w++) {
            uint64_t x = rnd64();
            size_t left = cols - w * 64;
            if (left < 64) x &= (1ull << left) - 1;
            bits[i * words + w] = x;
        }
}

static void test_compress(ds_kdtype dt, size_t rows, size_t cols, size_t offset)
{
    char what[128];
    size_t n = rows * cols, es = esize(dt), words = ds_bitpack_words(cols);
    char *wf = xmalloc((n + offset) * es), *wb = xmalloc((n + offset) * es);
    for (size_t i = 0; i < n; i++) {
        float b = rndf(), f = b + 0.01f * rndf();
        if (i % 7 == 0) f = b;                       /* delta 0: bit 1 */
        if (i % 11 == 0) { b = 0.0f; f = -0.0f; }    /* -0.0 >= 0: bit 1 */
        ref_store(dt, wb, i + offset, b);
        ref_store(dt, wf, i + offset, f);
    }
    uint64_t *bits = xmalloc(words * rows * 8), *gbits = xmalloc(words * rows * 8);
    double *ra = xmalloc(rows * 8), *gra = xmalloc(rows * 8);
    double *ca = xmalloc(cols * 8), *gca = xmalloc(cols * 8);
    for (size_t j = 0; j < cols; j++) ca[j] = 0.25 * (double)j; /* compress adds to it */
    char *dwf = dev_from(wf, (n + offset) * es), *dwb = dev_from(wb, (n + offset) * es);
    uint64_t *dbits = dev_alloc(words * rows * 8);
    CUDA_OK(cudaMemset(dbits, 0xff, words * rows * 8)); /* every word must be written */
    double *dra = dev_alloc(rows * 8), *dca = dev_from(ca, cols * 8);
    DS_OK(ds_cuda_bitpack_compress(dt, dwf + offset * es, dwb + offset * es, rows, cols, dbits, dra, dca, 0));
    ref_compress(dt, wf + offset * es, wb + offset * es, rows, cols, bits, ra, ca);
    to_host(gbits, dbits, words * rows * 8);
    to_host(gra, dra, rows * 8);
    to_host(gca, dca, cols * 8);
    snprintf(what, sizeof what, "compress %s %zux%zu+%zu bits", dt_name(dt), rows, cols, offset);
    check(memcmp(bits, gbits, words * rows * 8) == 0, what);
    snprintf(what, sizeof what, "compress %s %zux%zu+%zu row sums", dt_name(dt), rows, cols, offset);
    check(memcmp(ra, gra, rows * 8) == 0, what);
    snprintf(what, sizeof what, "compress %s %zux%zu+%zu column sums", dt_name(dt), rows, cols, offset);
    check(memcmp(ca, gca, cols * 8) == 0, what);
    cudaFree(dwf); cudaFree(dwb); cudaFree(dbits); cudaFree(dra); cudaFree(dca);
    free(wf); free(wb); free(bits); free(gbits); free(ra); free(gra); free(ca); free(gca);
}

static void test_apply(ds_kdtype odt, ds_kdtype idt, size_t rows, size_t cols, ds_scale_kind kind, int in_place)
{
    char what[128];
    size_t n = rows * cols, words = ds_bitpack_words(cols), ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
    char *wb = xmalloc(n * esize(idt)), *out = xmalloc(n * esize(odt)), *gout = xmalloc(n * esize(odt));
    for (size_t i = 0; i < n; i++) ref_store(idt, wb, i, 4.0f * rndf());
    uint64_t *bits = xmalloc(rows * words * 8);
    rand_bits(bits, rows, cols);
    float *sc = xmalloc(ns * 4);
    for (size_t i = 0; i < ns; i++) sc[i] = 0.01f + 0.05f * fabsf(rndf());
    void *dwb = dev_from(wb, n * esize(idt)), *dbits = dev_from(bits, rows * words * 8), *dsc = dev_from(sc, ns * 4);
    void *dout = in_place ? dwb : dev_alloc(n * esize(odt));
    DS_OK(ds_cuda_bitpack_apply(odt, dout, idt, dwb, dbits, rows, cols, kind, dsc, 0));
    ref_apply(odt, out, idt, wb, bits, rows, cols, kind, sc);
    to_host(gout, dout, n * esize(odt));
    snprintf(what, sizeof what, "apply %s<-%s %zux%zu kind %d%s", dt_name(odt), dt_name(idt), rows, cols, (int)kind,
             in_place ? " in place" : "");
    check(memcmp(out, gout, n * esize(odt)) == 0, what);
    if (odt == DS_KDT_F32 && idt == DS_KDT_F32 && !in_place) {
        float *ex = xmalloc(n * 4), *gex = xmalloc(n * 4);
        DS_OK(ds_cuda_bitpack_expand(dout, dbits, rows, cols, kind, dsc, 0));
        ref_expand(ex, bits, rows, cols, kind, sc);
        to_host(gex, dout, n * 4);
        snprintf(what, sizeof what, "expand %zux%zu kind %d", rows, cols, (int)kind);
        check(memcmp(ex, gex, n * 4) == 0, what);
        free(ex); free(gex);
    }
    if (!in_place) cudaFree(dout);
    cudaFree(dwb); cudaFree(dbits); cudaFree(dsc);
    free(wb); free(out); free(gout); free(bits); free(sc);
}

static void test_hamming(size_t n, size_t nwords, size_t w0, size_t w1)
{
    char what[128];
    uint64_t **v = xmalloc(n * sizeof *v), **dv = xmalloc(n * sizeof *dv);
    for (size_t u = 0; u < n; u++) {
        v[u] = xmalloc(nwords * 8);
        for (size_t w = 0; w < nwords; w++) v[u][w] = u % 5 == 4 ? v[u - 1][w] ^ (rnd64() & rnd64() & rnd64()) : rnd64();
        dv[u] = dev_from(v[u], nwords * 8);
    }
    uint64_t *out = xmalloc(n * n * 8), *gout = xmalloc(n * n * 8);
    for (size_t i = 0; i < n * n; i++) out[i] = i * 3; /* accumulated into; lower part untouched */
    uint64_t *dout = dev_from(out, n * n * 8);
    DS_OK(ds_cuda_hamming_pairs(n, (const uint64_t *const *)dv, w0, w1, dout, 0));
    ref_hamming_pairs(n, (const uint64_t *const *)v, w0, w1, out);
    to_host(gout, dout, n * n * 8);
    snprintf(what, sizeof what, "hamming n=%zu words [%zu, %zu)", n, w0, w1);
    check(memcmp(out, gout, n * n * 8) == 0, what);
    for (size_t u = 0; u < n; u++) { free(v[u]); cudaFree(dv[u]); }
    cudaFree(dout);
    free(v); free(dv); free(out); free(gout);
}

static void test_trimmed(size_t n, size_t rows, size_t cols, ds_scale_kind kind, size_t trim)
{
    char what[128];
    size_t words = ds_bitpack_words(cols), ns = kind == DS_SCALE_ROW ? n * rows : n;
    uint64_t **v = xmalloc(n * sizeof *v), **dv = xmalloc(n * sizeof *dv);
    for (size_t u = 0; u < n; u++) {
        v[u] = xmalloc(rows * words * 8);
        rand_bits(v[u], rows, cols);
        dv[u] = dev_from(v[u], rows * words * 8);
    }
    float *sc = xmalloc(ns * 4);
    for (size_t i = 0; i < ns; i++) {
        sc[i] = 0.001f + 0.01f * fabsf(rndf());
        if (i % 4 == 1) sc[i] = sc[i - 1];  /* ties */
        if (i % 9 == 5) sc[i] = -sc[i];     /* a negative scale flips the signs */
    }
    float *out = xmalloc(rows * cols * 4), *gout = xmalloc(rows * cols * 4);
    float *dout = dev_alloc(rows * cols * 4);
    DS_OK(ds_cuda_trimmed_mean(n, (const uint64_t *const *)dv, rows, cols, kind, sc, trim, dout, 0));
    ref_trimmed_mean(n, (const uint64_t *const *)v, rows, cols, kind, sc, trim, out);
    to_host(gout, dout, rows * cols * 4);
    double e = ref_nmse(gout, out, rows * cols);
    snprintf(what, sizeof what, "trimmed mean n=%zu trim=%zu %zux%zu kind %d (nmse %.3g)", n, trim, rows, cols, (int)kind, e);
    check(e < 1e-7, what);
    for (size_t u = 0; u < n; u++) { free(v[u]); cudaFree(dv[u]); }
    cudaFree(dout);
    free(v); free(dv); free(sc); free(out); free(gout);
}

static void test_matmul(cublasHandle_t h, size_t U, size_t m, size_t n, size_t k, ds_scale_kind kind)
{
    char what[128];
    size_t words = ds_bitpack_words(k), ns = kind == DS_SCALE_TENSOR ? U : kind == DS_SCALE_ROW ? U * n : U * k;
    uint16_t *x = xmalloc(U * m * k * 2), *wb = xmalloc(n * k * 2);
    for (size_t i = 0; i < U * m * k; i++) x[i] = ds_f32_to_bf16(rndf());
    for (size_t i = 0; i < n * k; i++) wb[i] = ds_f32_to_bf16(0.1f * rndf());
    uint64_t *bits = xmalloc(U * n * words * 8);
    rand_bits(bits, U * n, k);
    float *sc = xmalloc(ns * 4);
    for (size_t i = 0; i < ns; i++) sc[i] = 0.002f + 0.02f * fabsf(rndf());
    float *y = xmalloc(U * m * n * 4), *gy = xmalloc(U * m * n * 4);
    void *dx = dev_from(x, U * m * k * 2), *dwb = dev_from(wb, n * k * 2), *dbits = dev_from(bits, U * n * words * 8);
    void *dsc = dev_from(sc, ns * 4), *dy = dev_alloc(U * m * n * 4);
    DS_OK(ds_cuda_bitdelta_matmul(h, U, m, n, k, dx, dwb, dbits, kind, dsc, dy, 0));
    ref_bitdelta_matmul(U, m, n, k, x, wb, bits, kind, sc, y);
    to_host(gy, dy, U * m * n * 4);
    double e = ref_nmse(gy, y, U * m * n);
    snprintf(what, sizeof what, "bitdelta matmul U=%zu m=%zu n=%zu k=%zu kind %d (nmse %.3g)", U, m, n, k, (int)kind, e);
    check(e < 1e-7, what);
    cudaFree(dx); cudaFree(dwb); cudaFree(dbits); cudaFree(dsc); cudaFree(dy);
    free(x); free(wb); free(bits); free(sc); free(y); free(gy);
}

int main(void)
{
    if (ds_cuda_device_count() == 0) {
        printf("no GPU: skipped (%s)\n", ds_cuda_no_device_reason());
        return 77;
    }
    const ds_kdtype dts[3] = {DS_KDT_F32, DS_KDT_F16, DS_KDT_BF16};
    const size_t shapes[][2] = {{1, 1}, {3, 70}, {5, 64}, {33, 1000}, {17, 4096}, {9, 520}, {2, 8}};
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            test_compress(dts[d], shapes[s][0], shapes[s][1], 0);
            test_compress(dts[d], shapes[s][0], shapes[s][1], 1); /* unaligned: scalar loads */
        }
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 3; i++)
            for (int kind = 0; kind < 3; kind++) {
                test_apply(dts[o], dts[i], 17, 1000, (ds_scale_kind)kind, 0);
                test_apply(dts[o], dts[i], 6, 61, (ds_scale_kind)kind, 0);
                if (o == i) test_apply(dts[o], dts[i], 6, 64, (ds_scale_kind)kind, 1);
            }
    test_hamming(2, 3, 0, 3);
    test_hamming(37, 300, 5, 290);
    test_hamming(70, 2000, 0, 2000);
    const size_t users[] = {1, 2, 5, 8, 33};
    for (size_t a = 0; a < sizeof users / sizeof users[0]; a++) {
        size_t n = users[a];
        for (int kind = 0; kind < 2; kind++) {
            test_trimmed(n, 7, 130, (ds_scale_kind)kind, 0);
            test_trimmed(n, 7, 130, (ds_scale_kind)kind, (n - 1) / 2);
            if (n >= 5) test_trimmed(n, 7, 130, (ds_scale_kind)kind, n / 5);
        }
    }
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        printf("FAIL cublasCreate\n");
        return 1;
    }
    const size_t mm[][4] = {{3, 1, 70, 200}, {2, 3, 64, 256}, {4, 9, 33, 1000}, {16, 1, 128, 4096}};
    for (size_t s = 0; s < sizeof mm / sizeof mm[0]; s++)
        for (int kind = 0; kind < 3; kind++) test_matmul(h, mm[s][0], mm[s][1], mm[s][2], mm[s][3], (ds_scale_kind)kind);
    cublasDestroy(h);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
