/* Driver of src/fitscales.c for the independent PyTorch float64 reference
 * tests/python/fitscales_ref.py. Everything comes from a raw file the
 * reference wrote (no deltasoup I/O code between the two):
 *   the student's weights before coding, in tests/model/model_probe.c's raw
 *   model format (config, then every tensor f32 in engine order; the coded
 *   tensors hold W_b);
 *   int32 objective (0 kl, 1 mse), B, T, n_coded; float32 grad_scale;
 *   int32 tokens[B*T]; float32 teacher logits [B*T, vocab];
 *   per coded tensor: int32 engine index, scale kind (0 tensor, 1 row,
 *   2 col); uint64 signs [rows * ceil(cols/64)]; float32 scales.
 * Prints the objective's sum, then dL/dg of every scale (grad_scale applied),
 * one per line, %.17g. With "split", the batch goes through
 * ds_fitscales_accumulate in two parts (as two ranks would) and the
 * gradients are added. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/fitscales.h"

static void rd(FILE *f, void *p, size_t sz, size_t n)
{
    if (fread(p, sz, n, f) != n) {
        fprintf(stderr, "test_fitscales_probe: truncated input\n");
        exit(3);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_fitscales_probe IN.raw [split]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 3;
    }
    int32_t h[8];
    double e[2];
    rd(f, h, 4, 8);
    rd(f, e, 8, 2);
    ds_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                   .vocab_size = h[5], .max_seq_len = h[6], .norm_eps = (float)e[0], .rope_theta = (float)e[1],
                   .tied_embeddings = h[7]};
    ds_llama m;
    if (ds_llama_init(&m, &c)) {
        fprintf(stderr, "test_fitscales_probe: %s\n", ds_errmsg());
        return 3;
    }
    rd(f, m.w[0], 4, (size_t)m.numel);
    int32_t p[4];
    float gscale;
    rd(f, p, 4, 4);
    rd(f, &gscale, 4, 1);
    const int B = p[1], T = p[2], n = p[3], V = c.vocab_size;
    int *tokens = malloc(sizeof(int) * (size_t)B * T);
    float *ref = malloc(sizeof(float) * (size_t)B * T * V);
    rd(f, tokens, 4, (size_t)B * T);
    rd(f, ref, 4, (size_t)B * T * V);
    ds_fit_coded *cd = calloc((size_t)n, sizeof *cd);
    for (int k = 0; k < n; k++) {
        int32_t ik[2];
        rd(f, ik, 4, 2);
        const ds_tinfo *t = &m.tinfo[ik[0]];
        const size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
        const size_t ns = ik[1] == DS_SCALE_TENSOR ? 1 : ik[1] == DS_SCALE_ROW ? rows : cols;
        uint64_t *bits = malloc(sizeof(uint64_t) * rows * ds_bitpack_words(cols));
        float *sc = malloc(sizeof(float) * ns);
        rd(f, bits, 8, rows * ds_bitpack_words(cols));
        rd(f, sc, 4, ns);
        cd[k] = (ds_fit_coded){ik[0], (ds_scale_kind)ik[1], bits, sc};
    }
    fclose(f);

    ds_fitscales fs;
    ds_fitscales_init(&fs, &m, n, cd, p[0] == 1 ? DS_FIT_MSE : DS_FIT_KL, 1e-3);
    ds_llama_act *a = ds_llama_act_new(&m, B, T);
    ds_fitscales_zero_grad(&fs);
    double loss;
    if (argc > 2 && strcmp(argv[2], "split") == 0) {
        const int b1 = B / 2;
        loss = ds_fitscales_accumulate(&fs, a, tokens, b1, T, ref, gscale);
        loss += ds_fitscales_accumulate(&fs, a, tokens + (size_t)b1 * T, B - b1, T, ref + (size_t)b1 * T * V,
                                        gscale);
    } else {
        loss = ds_fitscales_accumulate(&fs, a, tokens, B, T, ref, gscale);
    }
    printf("%.17g\n", loss);
    for (int64_t i = 0; i < fs.n_scales; i++) printf("%.17g\n", fs.grad[i]);

    ds_llama_act_free(a);
    ds_fitscales_free(&fs);
    for (int k = 0; k < n; k++) {
        free((void *)cd[k].bits);
        free((void *)cd[k].scales);
    }
    free(cd);
    free(tokens);
    free(ref);
    ds_llama_free(&m);
    return 0;
}
