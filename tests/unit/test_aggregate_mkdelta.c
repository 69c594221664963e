/* Test helper: write a synthetic delta file with the ds_delta_* API, for the
 * aggregation tests (the shell tests under tests/aggregate/).
 *
 *   test_aggregate_mkdelta OUT --owner ID --seed S [--mode tensor|row|col]
 *                          [--noise P] [--poison scale|flip] [--base HEX]
 *                          [--shape-rows R] [--dp EPS]
 *
 * Tensors: a.weight coded [R, 150] (R = 37 by default), b.weight coded
 * [64, 64], c.dense F32 [10, 7], d.norm BF16 [33], e.half F16 [5, 6]. Every
 * user is a noisy copy of one shared "truth" (fixed seed): each sign is
 * flipped with probability P (default 0.1); scales are the truth's times
 * 1 + k/8 for a random k in {0, 1, 2} (so users tie), dense values the
 * truth's plus noise on a grid of 1/64 (ties again). --poison scale
 * multiplies the scales and dense values by 1000, --poison flip flips every
 * sign and negates the dense values. */
#include "config.h"
#include <getopt.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_delta.h"
#include "src/ds.h"

static uint64_t st;
static uint64_t rnd(void)
{
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return st >> 11;
}
static double rndu(void) { return (double)(rnd() & 0xffffff) / 16777216.0; }

/* An MPI program: Open MPI's allocations read as leaks under ASan (Makefile.am). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"owner", 1, 0, 'O'}, {"seed", 1, 0, 's'},  {"mode", 1, 0, 'm'},
                                       {"noise", 1, 0, 'n'}, {"poison", 1, 0, 'p'}, {"base", 1, 0, 'b'},
                                       {"shape-rows", 1, 0, 'r'}, {"dp", 1, 0, 'd'}, {0, 0, 0, 0}};
    const char *owner = "user", *poison = "", *base = "1111111111111111111111111111111111111111111111111111111111111111";
    long seed = 1, rows_a = 37;
    double noise = 0.1, dp = -1;
    ds_scale_kind mode = DS_SCALE_TENSOR;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'O': owner = optarg; break;
        case 's': seed = atol(optarg); break;
        case 'm': if (ds_scale_kind_parse(optarg, &mode)) return 2; break;
        case 'n': noise = atof(optarg); break;
        case 'p': poison = optarg; break;
        case 'b': base = optarg; break;
        case 'r': rows_a = atol(optarg); break;
        case 'd': dp = atof(optarg); break;
        default: return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: %s OUT --owner ID --seed S [...]\n", argv[0]);
        return 2;
    }
    MPI_Init(&argc, &argv);
    const struct { const char *name; int coded; ds_dtype dt; int ndim; int64_t s0, s1; } spec[] = {
        {"a.weight", 1, DS_DTYPE_F32, 2, rows_a, 150}, {"b.weight", 1, DS_DTYPE_BF16, 2, 64, 64},
        {"c.dense", 0, DS_DTYPE_F32, 2, 10, 7},        {"d.norm", 0, DS_DTYPE_BF16, 1, 33, 0},
        {"e.half", 0, DS_DTYPE_F16, 2, 5, 6}};
    const int nt = 5;
    ds_delta_entry e[5];
    memset(e, 0, sizeof e);
    for (int i = 0; i < nt; i++) {
        snprintf(e[i].t.name, sizeof e[i].t.name, "%s", spec[i].name);
        e[i].t.dtype = spec[i].dt;
        e[i].t.ndim = spec[i].ndim;
        e[i].t.shape[0] = spec[i].s0;
        e[i].t.shape[1] = spec[i].s1;
        if (spec[i].coded) ds_delta_entry_code(&e[i], mode);
    }
    ds_delta_meta m;
    memset(&m, 0, sizeof m);
    m.cfg = (ds_config){.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .vocab_size = 512,
                        .max_seq_len = 512, .norm_eps = 1e-5f, .rope_theta = 10000.0f, .tied_embeddings = 1};
    snprintf(m.base_sha256, sizeof m.base_sha256, "%s", base);
    snprintf(m.owner, sizeof m.owner, "%s", owner);
    snprintf(m.scale_fit, sizeof m.scale_fit, "mean_abs");
    m.has_dp = dp >= 0;
    m.dp_epsilon = dp;
    m.dp_delta = 1e-5;
    m.n = nt;
    m.entries = e;
    ds_delta_file *f;
    int rc = ds_delta_create(argv[optind], MPI_COMM_WORLD, &m, 1, &f);
    if (rc) {
        MPI_Finalize();
        return rc;
    }
    const int flip = strcmp(poison, "flip") == 0;
    const double mul = strcmp(poison, "scale") == 0 ? 1000.0 : 1.0;
    for (int i = 0; i < nt && !rc; i++) {
        const int64_t numel = ds_tinfo_numel(&e[i].t);
        /* the truth: the same for every user (its own seed per tensor) */
        uint64_t user_state = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1) + (uint64_t)i;
        if (e[i].coded) {
            const size_t W = (size_t)e[i].words_per_row;
            uint64_t *bits = calloc((size_t)e[i].rows * W, 8);
            float *sc = malloc(sizeof(float) * (size_t)e[i].n_scales);
            st = 1000 + (uint64_t)i;
            for (int64_t r = 0; r < e[i].rows; r++)
                for (int64_t col = 0; col < e[i].cols; col++)
                    if (rnd() & 1) bits[r * (int64_t)W + col / 64] |= 1ull << (col % 64);
            for (int64_t k = 0; k < e[i].n_scales; k++) sc[k] = (float)(0.25 + 0.125 * (double)(rnd() % 8));
            st = user_state;
            for (int64_t r = 0; r < e[i].rows; r++)
                for (int64_t col = 0; col < e[i].cols; col++)
                    if (flip || rndu() < noise) bits[r * (int64_t)W + col / 64] ^= 1ull << (col % 64);
            for (int64_t k = 0; k < e[i].n_scales; k++) sc[k] = (float)(sc[k] * (1.0 + 0.125 * (double)(rnd() % 3)) * mul);
            rc = ds_delta_write_signs(f, i, bits);
            if (!rc) rc = ds_delta_write_scales(f, i, sc);
            free(bits);
            free(sc);
        } else {
            float *v = malloc(sizeof(float) * (size_t)numel);
            st = 2000 + (uint64_t)i;
            for (int64_t k = 0; k < numel; k++) v[k] = (float)((double)(rnd() % 64) / 64.0 - 0.5);
            st = user_state;
            for (int64_t k = 0; k < numel; k++) {
                v[k] += (float)((double)(rnd() % 5) / 64.0);
                v[k] = (float)(v[k] * mul * (flip ? -1 : 1));
            }
            void *buf = malloc(ds_tinfo_bytes(&e[i].t));
            ds_from_f32(e[i].t.dtype, v, buf, (size_t)numel);
            rc = ds_delta_write_dense(f, i, buf);
            free(v);
            free(buf);
        }
    }
    rc = ds_delta_commit(f, rc, NULL, NULL);
    MPI_Finalize();
    return rc;
}
