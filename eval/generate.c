/* Text generation with the KV-cached engine (eval/generate.h). */
#include "config.h"
#include "eval/generate.h"
#include <math.h>
#include "io/tokenizer.h"

int ds_generate_pick(float *z, int V, float temp, ds_rng *rng)
{
    int best = 0;
    for (int j = 1; j < V; j++) best = z[j] > z[best] ? j : best;
    if (temp == 0) return best;
    const float mx = z[best];
    double sum = 0;
    for (int j = 0; j < V; j++) sum += (z[j] = expf((z[j] - mx) / temp));
    double u = ds_rng_uniform(rng) * sum, c = 0;
    for (int j = 0; j < V; j++)
        if ((c += z[j]) > u) return j;
    return best; /* u landed on the rounding slack at the end */
}

int ds_generate(const ds_llama *m, const int *ids, int np, int total, float temp, uint64_t seed,
                ds_generate_fn on_token, void *arg, int *out)
{
    ds_llama_kv kv;
    ds_llama_kv_init(&kv, m, total);
    ds_rng rng = {seed};
    int n = 0, prev = ids[np - 1];
    float *z = NULL;
    for (int pos = 0; pos < np; pos++) z = ds_llama_step(m, &kv, ids[pos], pos);
    for (int pos = np; pos < total; pos++) {
        int next = ds_generate_pick(z, m->cfg.vocab_size, temp, &rng);
        if (next == DS_TOK_EOS || next == DS_TOK_BOS) break;
        out[n++] = next;
        if (on_token) on_token(arg, prev, next);
        prev = next;
        if (pos + 1 < total) z = ds_llama_step(m, &kv, next, pos);
    }
    ds_llama_kv_free(&kv);
    return n;
}
