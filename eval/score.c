/* Scoring primitives of the evaluation tasks (eval/tasks.h): answer
 * log-likelihoods for multiple choice, MC1/MC2, greedy answers. */
#include "config.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval/tasks.h"

void ds_eval_env_free(ds_eval_env *e)
{
    ds_llama_act_free(e->act);
    ds_llama_act_free(e->ref_act);
    if (e->have_kv) ds_llama_kv_free(&e->kv);
    e->act = e->ref_act = NULL;
    e->act_b = e->act_t = e->ref_act_t = 0;
    e->have_kv = 0;
}

ds_llama_act *ds_eval_env_act(ds_eval_env *e, int B, int T)
{
    if (!e->act || B > e->act_b || T > e->act_t) {
        ds_llama_act_free(e->act);
        e->act_b = B > e->act_b ? B : e->act_b;
        e->act_t = T > e->act_t ? T : e->act_t;
        e->act = ds_llama_act_new(e->m, e->act_b, e->act_t);
    }
    return e->act;
}

int ds_eval_loglik(ds_eval_env *e, const char *prompt, int n, const char *const *answers, double *ll)
{
    const int max_t = e->m->cfg.max_seq_len;
    int *pids = ds_malloc((strlen(prompt) + 3) * sizeof *pids);
    const int np = ds_tokenizer_encode(e->tok, prompt, 1, 0, pids);
    int **aids = ds_malloc((size_t)n * sizeof *aids), *na = ds_malloc((size_t)n * sizeof *na);
    int T = 0, rc = np < 0 ? DS_EXIT_INPUT : 0; /* not UTF-8: ds_err is set */
    if (np == 0) rc = ds_err(DS_EXIT_INPUT, "the prompt has no tokens");
    for (int i = 0; i < n; i++) {
        aids[i] = ds_malloc((strlen(answers[i]) + 3) * sizeof **aids);
        na[i] = rc ? 0 : ds_tokenizer_encode(e->tok, answers[i], 0, 0, aids[i]);
        if (na[i] < 0) na[i] = 0, rc = DS_EXIT_INPUT;
        if (np + na[i] > T) T = np + na[i];
    }
    if (!rc && T > max_t)
        rc = ds_err(DS_EXIT_INPUT, "prompt and answer take %d tokens, more than the model's max_seq_len %d", T, max_t);
    if (!rc) {
        /* Right padding: with causal attention the pad (EOS) after an answer
         * cannot change the logits of the positions before it. */
        int *tokens = ds_malloc((size_t)n * (size_t)T * sizeof *tokens);
        int *targets = ds_malloc((size_t)n * (size_t)T * sizeof *targets);
        for (int i = 0; i < n; i++) {
            int *row = tokens + (size_t)i * T;
            memcpy(row, pids, (size_t)np * sizeof *row);
            memcpy(row + np, aids[i], (size_t)na[i] * sizeof *row);
            for (int j = np + na[i]; j < T; j++) row[j] = e->tok->eos_id >= 0 ? e->tok->eos_id : 0;
        }
        for (size_t j = 0; j < (size_t)n * T; j++) targets[j] = -1;
        ds_llama_act *a = ds_eval_env_act(e, n, T);
        ds_llama_forward(e->m, a, tokens, n, T);
        for (int i = 0; i < n; i++) {
            /* position np - 1 + j predicts answer token j */
            int *tg = targets + (size_t)i * T + np - 1;
            for (int j = 0; j < na[i]; j++) tg[j] = aids[i][j];
            ll[i] = na[i] ? -ds_llama_loss_ce(a, targets, 0.0f, NULL) : 0.0;
            /* a finite loss sum implies the logits it used were finite */
            if (!isfinite(ll[i]) && !rc)
                rc = ds_err(DS_EXIT_INPUT, "answer %d: the log-likelihood is not finite (non-finite logits)", i + 1);
            for (int j = 0; j < na[i]; j++) tg[j] = -1;
        }
        free(tokens);
        free(targets);
    }
    for (int i = 0; i < n; i++) free(aids[i]);
    free(aids);
    free(na);
    free(pids);
    return rc;
}

int ds_eval_mc1(int n, const double *ll, int gold)
{
    int best = 0;
    for (int i = 1; i < n; i++) best = ll[i] > ll[best] ? i : best;
    return best == gold;
}

double ds_eval_mc2(int n, const double *ll, const int *label)
{
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = ll[i] > mx ? ll[i] : mx;
    double all = 0, good = 0; /* exp(ll - max): the common factor cancels */
    for (int i = 0; i < n; i++) {
        const double p = exp(ll[i] - mx);
        all += p;
        if (label[i]) good += p;
    }
    return good / all;
}

int ds_eval_greedy(ds_eval_env *e, const int *ids, int n_ids, int max_new, int *out)
{
    const ds_llama *m = e->m;
    const int max_t = m->cfg.max_seq_len, V = m->cfg.vocab_size;
    if (!e->have_kv) {
        ds_llama_kv_init(&e->kv, m, max_t);
        e->have_kv = 1;
    }
    /* Keep BOS and the end of a long prompt: the request is at its end. */
    int keep = max_t - max_new, skip = 0;
    if (keep < 1) keep = 1;
    if (n_ids > keep) skip = n_ids - keep;
    int stop[DS_TOK_MAX_STOP], n_stop = ds_tokenizer_stop_ids(e->tok, stop);
    float *z = NULL;
    int pos = 0;
    z = ds_llama_step(m, &e->kv, ids[0], pos++);
    for (int i = 1 + skip; i < n_ids; i++) z = ds_llama_step(m, &e->kv, ids[i], pos++);
    int n = 0;
    while (n < max_new && pos < max_t) {
        /* V floats a step beside a forward pass: a NaN would pick token 0 */
        if (ds_find_nonfinite(DS_DTYPE_F32, z, (size_t)V) >= 0) return -1 - n;
        int best = 0, end = 0;
        for (int j = 1; j < V; j++) best = z[j] > z[best] ? j : best;
        for (int k = 0; k < n_stop; k++) end |= best == stop[k];
        if (end) break;
        out[n++] = best;
        if (n < max_new && pos + 1 < max_t) z = ds_llama_step(m, &e->kv, best, pos);
        pos++;
    }
    return n;
}

int ds_eval_answer(ds_eval_env *e, const ds_chat_msg *msgs, int n, char **ans)
{
    *ans = NULL;
    int *ids, n_ids;
    const char *tmpl = e->o->chat_template ? e->o->chat_template : "none";
    int rc = ds_tokenizer_encode_chat(e->tok, tmpl, msgs, n, 1, &ids, &n_ids);
    if (rc) return rc;
    if (n_ids == 0) {
        free(ids);
        return ds_err(DS_EXIT_INPUT, "the prompt has no tokens");
    }
    const int max_new = e->o->max_tokens;
    int *out = ds_malloc((size_t)max_new * sizeof *out);
    const int k = ds_eval_greedy(e, ids, n_ids, max_new, out);
    if (k < 0) {
        free(out);
        free(ids);
        return ds_err(DS_EXIT_INPUT, "the model's logits are not finite at generated token %d", -k);
    }
    /* ids come from the model, always in range: decoding cannot fail */
    char *a = ds_tokenizer_decode_ids(e->tok, out, k, NULL);
    size_t lead = 0;
    while (a[lead] && isspace((unsigned char)a[lead])) lead++;
    memmove(a, a + lead, strlen(a + lead) + 1);
    free(out);
    free(ids);
    *ans = a;
    return 0;
}
