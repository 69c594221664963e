/* Token windows from a text file (io/tokens.h). */
#include "config.h"
#include "io/tokens.h"
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "src/ds.h"
#include "src/model.h"

int ds_tokens_read(const char *path, ds_tokens *t)
{
    memset(t, 0, sizeof *t);
    t->path = path;
    return ds_text_load_sha(path, &t->docs, t->sha256);
}

int ds_tokens_encode(ds_tokens *t, ds_tokenizer *tok)
{
    size_t cap = 0;
    for (int k = 0; k < t->docs.n; k++) cap += strlen(t->docs.docs[k]) + 3;
    free(t->tok);
    t->tok = ds_malloc((cap ? cap : 1) * sizeof *t->tok);
    t->n = 0;
    int rc = 0;
    for (int k = 0; k < t->docs.n && !rc; k++) {
        int n = ds_tokenizer_encode(tok, t->docs.docs[k], 1, 0, t->tok + t->n);
        if (n < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", ds_errmsg());
            rc = ds_err(DS_EXIT_INPUT, "%s: document %d: %s", t->path ? t->path : "text", k + 1, why);
        } else
            t->n += n;
    }
    ds_text_docs_free(&t->docs);
    return rc;
}

int ds_tokens_load(const char *path, ds_tokenizer *tok, ds_tokens *t)
{
    int rc = ds_tokens_read(path, t);
    if (!rc) rc = ds_tokens_encode(t, tok);
    return rc;
}

void ds_tokens_free(ds_tokens *t)
{
    ds_text_docs_free(&t->docs);
    free(t->tok);
    t->tok = NULL;
    t->n = 0;
}

void ds_tokens_batch(const ds_tokens *t, int T, int64_t B, uint64_t seed, int64_t step, int64_t lo, int64_t hi,
                     int *tokens, int *targets)
{
    /* Every rank draws the whole batch and keeps its rows. */
    ds_rng rng = {seed * 0x9e3779b97f4a7c15ull + (uint64_t)step};
    for (int64_t b = 0; b < B; b++) {
        int64_t off = (int64_t)(ds_rng_u64(&rng) % (uint64_t)(t->n - T));
        if (b < lo || b >= hi) continue;
        memcpy(tokens + (b - lo) * T, t->tok + off, (size_t)T * sizeof *tokens);
        memcpy(targets + (b - lo) * T, t->tok + off + 1, (size_t)T * sizeof *targets);
    }
}

/* p = 0..n-1 in a Fisher-Yates order of a splitmix64 stream. */
static void shuffle(int64_t *p, int64_t n, uint64_t seed)
{
    ds_rng r = {seed};
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ds_rng_u64(&r) % (uint64_t)(i + 1));
        int64_t x = p[i];
        p[i] = p[j];
        p[j] = x;
    }
}

int ds_token_windows_cut(const ds_tokens *t, int T, int64_t samples, double holdout, uint64_t seed,
                         ds_token_windows *w)
{
    memset(w, 0, sizeof *w);
    w->T = T;
    w->epoch = -1;
    const int64_t nw = t->n / T;
    w->available = nw;
    const int64_t use = nw < samples ? nw : samples;
    int64_t hold = (int64_t)floor(holdout * (double)use);
    if (holdout > 0 && hold == 0 && use >= 2) hold = 1;
    if (use - hold < 1)
        return ds_err(DS_EXIT_INPUT, "%s: %lld tokens make %lld window(s) of --seq-len %d; need at least %d", t->path,
                      (long long)t->n, (long long)nw, T, holdout > 0 ? 2 : 1);
    int64_t *perm = ds_malloc((size_t)nw * sizeof *perm);
    shuffle(perm, nw, seed ^ 0x63616c6962ull); /* "calib" */
    w->n_train = use - hold;
    w->n_hold = hold;
    w->train = ds_malloc((size_t)(w->n_train * T) * sizeof(int));
    w->hold = ds_malloc((size_t)((hold ? hold : 1) * T) * sizeof(int));
    for (int64_t k = 0; k < use; k++) {
        int *dst = k < w->n_train ? w->train + k * T : w->hold + (k - w->n_train) * T;
        memcpy(dst, t->tok + perm[k] * T, (size_t)T * sizeof(int));
    }
    free(perm);
    w->perm = ds_malloc((size_t)w->n_train * sizeof *w->perm);
    return 0;
}

const int *ds_token_windows_train(ds_token_windows *w, uint64_t seed, int64_t p)
{
    const int64_t e = p / w->n_train;
    if (e != w->epoch) {
        shuffle(w->perm, w->n_train, seed * 0x9e3779b97f4a7c15ull + (uint64_t)e);
        w->epoch = e;
    }
    return w->train + w->perm[p % w->n_train] * w->T;
}

void ds_token_windows_free(ds_token_windows *w)
{
    free(w->train);
    free(w->hold);
    free(w->perm);
    w->train = w->hold = NULL;
    w->perm = NULL;
}
