/* Sign-packing kernels on one matrix pair, one core: compress (delta, signs,
 * sum |delta|) of a bf16 rows x cols pair in GB/s of input (both matrices),
 * and apply (bf16 W_b + g(2b - 1) -> bf16) in GB/s of W, each next to memcpy
 * of the same bytes. Every variant this CPU runs; best of --reps runs.
 * Output: "key value" lines for bench/signpack.sh. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/half.h"
#include "src/ds.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static double rnd(void)
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53 - 0.5;
}

/* The smaller of best and the time since t0. */
static double best_time(double best, double t0)
{
    double t = ds_now() - t0;
    return t < best ? t : best;
}

int main(int argc, char **argv)
{
    long rows = 11008, cols = 4096, reps = 5;
    static const struct option opts[] = {{"rows", 1, 0, 'r'}, {"cols", 1, 0, 'c'},
                                         {"reps", 1, 0, 'n'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        if (o == 'r') rc = ds_parse_int("--rows", optarg, 1, 1L << 20, &rows);
        else if (o == 'c') rc = ds_parse_int("--cols", optarg, 1, 1L << 20, &cols);
        else if (o == 'n') rc = ds_parse_int("--reps", optarg, 1, 1000, &reps);
        else if (o == 'h') {
            printf("usage: bench_signpack [--rows N] [--cols N] [--reps N]\n");
            return 0;
        } else
            return DS_EXIT_USAGE;
        if (rc) {
            fprintf(stderr, "bench_signpack: %s\n", ds_errmsg());
            return rc;
        }
    }
    size_t n = (size_t)rows * (size_t)cols, wpr = ds_bitpack_words((size_t)cols);
    size_t wbytes = n * 2, in_bytes = 2 * wbytes;
    uint16_t *pair = ds_malloc(in_bytes), *copy = ds_malloc(in_bytes);
    uint16_t *wb = pair, *wf = pair + n, *out = ds_malloc(wbytes);
    uint64_t *bits = ds_malloc((size_t)rows * wpr * 8), *bref = ds_malloc((size_t)rows * wpr * 8);
    double *row_abs = ds_malloc((size_t)rows * sizeof(double));
    /* Weights like a 7B model's: ~0.02 spread, fine-tune deltas ~1e-3. */
    for (size_t i = 0; i < n; i++) {
        float b = (float)(rnd() * 0.04);
        wb[i] = ds_f32_to_bf16(b);
        wf[i] = ds_f32_to_bf16(b + (float)(rnd() * 0.002));
    }
    memset(copy, 0, in_bytes); /* fault the pages in before timing */
    memset(out, 0, wbytes);
    printf("shape %ld %ld\ninput_bytes %zu\n", rows, cols, in_bytes);

    ds_bitpack_compress_ref(DS_KDT_BF16, wf, wb, (size_t)rows, (size_t)cols, bref, row_abs,
                            NULL);
    double ref_sum = 0;
    for (long r = 0; r < rows; r++) ref_sum += row_abs[r];
    printf("mean_abs_delta %.9g\n", ref_sum / (double)n);
    float g = (float)(ref_sum / (double)n);
    /* memcpy runs interleaved with the kernels, so that both see the same
     * load on a shared machine; the best of each is reported. */
    double t_cpin = 1e30, t_cpw = 1e30, t0;
    for (int v = 0; v < DS_SIMD_COUNT; v++) {
        if (!ds_simd_supported((ds_simd)v)) continue;
        ds_simd_force((ds_simd)v);
        const char *name = ds_simd_name((ds_simd)v);
        double t_c = 1e30, t_a = 1e30;
        for (long r = 0; r < reps; r++) {
            t0 = ds_now();
            memcpy(copy, pair, in_bytes);
            t_cpin = best_time(t_cpin, t0);
            t0 = ds_now();
            ds_bitpack_compress(DS_KDT_BF16, wf, wb, (size_t)rows, (size_t)cols, bits, row_abs,
                                NULL);
            t_c = best_time(t_c, t0);
            t0 = ds_now();
            memcpy(out, wb, wbytes);
            t_cpw = best_time(t_cpw, t0);
            t0 = ds_now();
            ds_bitpack_apply(DS_KDT_BF16, out, DS_KDT_BF16, wb, bits, (size_t)rows, (size_t)cols,
                             DS_SCALE_TENSOR, &g);
            t_a = best_time(t_a, t0);
        }
        if (memcmp(bits, bref, (size_t)rows * wpr * 8) != 0) {
            fprintf(stderr, "bench_signpack: %s bits differ from ref\n", name);
            return DS_EXIT_FAIL;
        }
        printf("compress_%s_gbps %.3f\n", name, in_bytes / t_c * 1e-9);
        printf("apply_%s_gbps %.3f\n", name, wbytes / t_a * 1e-9);
    }
    printf("memcpy_input_gbps %.3f\n", in_bytes / t_cpin * 1e-9);
    printf("memcpy_w_gbps %.3f\n", wbytes / t_cpw * 1e-9);
    printf("best_variant %s\n", ds_simd_name(ds_simd_best()));
    free(pair), free(copy), free(out), free(bits), free(bref), free(row_abs);
    return 0;
}
