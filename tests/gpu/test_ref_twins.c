/* CPU only: the GPU tests' references (ref.c) against the CPU kernels'
 * portable twins (kernels/cpu, *_ref), bit for bit, so that a GPU test
 * passing means the GPU agrees with the CPU kernels too. Runs everywhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/popcount.h"
#include "tests/gpu/ref.h"

static int failures;
static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rndf(void) { return (float)((double)(rnd64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static void check(int ok, const char *what, ds_kdtype dt, size_t rows, size_t cols)
{
    if (!ok) {
        printf("FAIL %s dt=%d %zux%zu\n", what, (int)dt, rows, cols);
        failures++;
    }
}

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

static void twins(ds_kdtype dt, size_t rows, size_t cols)
{
    size_t n = rows * cols, es = dt == DS_KDT_F32 ? 4 : 2, words = ds_bitpack_words(cols);
    char *wf = xcalloc(n * es), *wb = xcalloc(n * es);
    for (size_t i = 0; i < n; i++) {
        float b = rndf(), f = i % 5 == 0 ? b : b + 0.05f * rndf();
        ref_store(dt, wb, i, b);
        ref_store(dt, wf, i, f);
    }
    uint64_t *b1 = xcalloc(rows * words * 8), *b2 = xcalloc(rows * words * 8);
    double *r1 = xcalloc(rows * 8), *r2 = xcalloc(rows * 8), *c1 = xcalloc(cols * 8), *c2 = xcalloc(cols * 8);
    ref_compress(dt, wf, wb, rows, cols, b1, r1, c1);
    ds_bitpack_compress_ref(dt, wf, wb, rows, cols, b2, r2, c2);
    check(memcmp(b1, b2, rows * words * 8) == 0, "compress bits", dt, rows, cols);
    check(memcmp(r1, r2, rows * 8) == 0, "compress row sums", dt, rows, cols);
    check(memcmp(c1, c2, cols * 8) == 0, "compress column sums", dt, rows, cols);
    float sc[4096];
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) sc[i] = 0.01f + 0.1f * (float)(rnd64() % 1000) / 1000.0f;
    char *o1 = xcalloc(n * 4), *o2 = xcalloc(n * 4);
    for (int kind = 0; kind < 3; kind++)
        for (int odt = 0; odt < 3; odt++) {
            ref_apply((ds_kdtype)odt, o1, dt, wb, b1, rows, cols, (ds_scale_kind)kind, sc);
            ds_bitpack_apply_ref((ds_kdtype)odt, o2, dt, wb, b1, rows, cols, (ds_scale_kind)kind, sc);
            check(memcmp(o1, o2, n * (odt == DS_KDT_F32 ? 4 : 2)) == 0, "apply", dt, rows, cols);
        }
    ref_expand((float *)o1, b1, rows, cols, DS_SCALE_ROW, sc);
    ds_bitpack_expand_ref((float *)o2, b1, rows, cols, DS_SCALE_ROW, sc);
    check(memcmp(o1, o2, n * 4) == 0, "expand", dt, rows, cols);
    free(wf); free(wb); free(b1); free(b2); free(r1); free(r2); free(c1); free(c2); free(o1); free(o2);
}

int main(void)
{
    const size_t shapes[][2] = {{1, 1}, {3, 70}, {5, 64}, {33, 1000}, {4, 4096}, {9, 520}};
    for (int dt = 0; dt < 3; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) twins((ds_kdtype)dt, shapes[s][0], shapes[s][1]);
    enum { NU = 19, NW = 70 };
    uint64_t *v[NU], h1[NU * NU], h2[NU * NU];
    for (int u = 0; u < NU; u++) {
        v[u] = xcalloc(NW * 8);
        for (int w = 0; w < NW; w++) v[u][w] = rnd64() & rnd64();
    }
    for (int i = 0; i < NU * NU; i++) h1[i] = h2[i] = (uint64_t)i;
    ref_hamming_pairs(NU, (const uint64_t *const *)v, 3, 67, h1);
    ds_hamming_pairs_ref(NU, (const uint64_t *const *)v, 3, 67, h2);
    check(memcmp(h1, h2, sizeof h1) == 0, "hamming pairs", DS_KDT_F32, NU, NW);
    for (int u = 0; u < NU; u++) free(v[u]);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
