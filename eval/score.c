/* Scoring primitives of the evaluation tasks (eval/tasks.h): answer
 * log-likelihoods for multiple choice, MC1/MC2, greedy answers. */
#include "config.h"
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval/generate.h"
#include "eval/tasks.h"
#include <mpi.h>

void ds_eval_env_free(ds_eval_env *e)
{
    ds_llama_act_free(e->act);
    ds_llama_act_free(e->ref_act);
    ds_llama_act_free(e->pre_act);
    if (e->have_kv) ds_llama_kv_free(&e->kv);
    free(e->xin);
    e->xin = NULL;
    e->xin_n = 0;
    for (int k = 0; k < DS_EVAL_RING; k++) {
        free(e->ring[k]);
        e->ring[k] = NULL;
        e->ring_n[k] = 0;
    }
    e->act = e->ref_act = e->pre_act = NULL;
    e->act_b = e->act_t = e->ref_act_t = e->pre_act_t = 0;
    e->have_kv = 0;
}

ds_llama_act *ds_eval_env_act(ds_eval_env *e, int B, int T)
{
    if (!e->act || B > e->act_b || T > e->act_t) {
        /* grown in steps (fewer reallocations, each a round of page faults) */
        ds_llama_act_free(e->act);
        const int max_t = e->m->cfg.max_seq_len;
        e->act_b = B > e->act_b ? (B + 3) / 4 * 4 : e->act_b;
        e->act_t = T > e->act_t ? (T + 31) / 32 * 32 : e->act_t;
        if (e->act_t > max_t) e->act_t = max_t < T ? T : max_t;
        e->act = ds_llama_act_new_fwd(e->m, e->act_b, e->act_t);
    }
    return e->act;
}

/* ---- through the stages of a pipeline */

static int piped(const ds_eval_env *e) { return e->pipe && e->pipe->P > 1; }

/* e->xin with room for n floats (grown as needed). */
static float *xin(ds_eval_env *e, size_t n)
{
    if (n > INT_MAX) ds_die("eval: %zu hidden-state floats in one message exceed MPI's int count", n);
    if (n > e->xin_n) {
        free(e->xin);
        e->xin = ds_malloc(n * sizeof *e->xin);
        e->xin_n = n;
    }
    return e->xin;
}

int ds_eval_has_logits(const ds_eval_env *e) { return !piped(e) || e->pipe->last; }

int ds_eval_scored(const ds_eval_env *e) { return !piped(e) || e->pipe->last || !e->ahead; }

void ds_eval_share(const ds_eval_env *e, double *v, int n)
{
    if (piped(e) && !e->ahead) MPI_Bcast(v, n, MPI_DOUBLE, e->pipe->P - 1, e->pipe->group_comm);
}

/* Messages of group_comm: hidden states (forwards, generation steps), and
 * when running ahead the end of a stage's items (to the next stage) and the
 * last stage's failure (passed back stage by stage). */
enum { TAG_X = 0, TAG_END = 11, TAG_STOP = 12 };
static const char no_bytes = 0;

void ds_eval_pipe_begin(ds_eval_env *e, int ahead)
{
    e->ahead = piped(e) && ahead;
    e->ring_i = e->stop_in = e->stop_out = 0;
    for (int k = 0; k < DS_EVAL_RING; k++) e->ring_req[k] = MPI_REQUEST_NULL;
    e->stop_req = MPI_REQUEST_NULL;
}

/* The stop signal to the previous stage, once. */
static void pass_stop(ds_eval_env *e)
{
    const ds_pipe *p = e->pipe;
    if (p->first || e->stop_out) return;
    MPI_Isend(&no_bytes, 0, MPI_BYTE, p->stage - 1, TAG_STOP, p->group_comm, &e->stop_req);
    e->stop_out = 1;
}

/* The next stage's stop signal (sent or about to be), passed on. */
static void take_stop(ds_eval_env *e)
{
    char b;
    MPI_Recv(&b, 0, MPI_BYTE, e->pipe->stage + 1, TAG_STOP, e->pipe->group_comm, MPI_STATUS_IGNORE);
    e->stop_in = 1;
    pass_stop(e);
}

int ds_eval_pipe_stopped(ds_eval_env *e)
{
    if (!e->ahead || e->pipe->last) return 0;
    if (!e->stop_in) {
        int flag = 0;
        MPI_Iprobe(e->pipe->stage + 1, TAG_STOP, e->pipe->group_comm, &flag, MPI_STATUS_IGNORE);
        if (flag) take_stop(e);
    }
    return e->stop_in;
}

int ds_eval_pipe_end(ds_eval_env *e, int rc)
{
    if (!e->ahead) return rc;
    const ds_pipe *p = e->pipe;
    MPI_Request end = MPI_REQUEST_NULL;
    if (p->last && rc) pass_stop(e);
    /* after this stage's last forward (messages from one sender arrive in
     * order), the next stage takes what is in flight up to this */
    if (!p->last) MPI_Isend(&no_bytes, 0, MPI_BYTE, p->stage + 1, TAG_END, p->group_comm, &end);
    for (int done = p->first; !done;) {
        MPI_Status st;
        char b;
        MPI_Probe(p->stage - 1, MPI_ANY_TAG, p->group_comm, &st);
        if ((done = st.MPI_TAG == TAG_END)) {
            MPI_Recv(&b, 0, MPI_BYTE, p->stage - 1, TAG_END, p->group_comm, MPI_STATUS_IGNORE);
        } else { /* a forward of an item after this stage's failure or stop: dropped */
            int count = 0;
            MPI_Get_count(&st, MPI_FLOAT, &count);
            MPI_Recv(xin(e, (size_t)count), count, MPI_FLOAT, p->stage - 1, TAG_X, p->group_comm, MPI_STATUS_IGNORE);
        }
    }
    int group_rc = rc;
    MPI_Bcast(&group_rc, 1, MPI_INT, p->P - 1, p->group_comm);
    if (group_rc && !p->last && !e->stop_in) take_stop(e);
    MPI_Waitall(DS_EVAL_RING, e->ring_req, MPI_STATUSES_IGNORE);
    MPI_Wait(&end, MPI_STATUS_IGNORE);
    MPI_Wait(&e->stop_req, MPI_STATUS_IGNORE);
    e->ahead = 0;
    return p->last || !group_rc ? rc : 0;
}

/* Running ahead: n floats of out to the next stage from the ring (the
 * send of DS_EVAL_RING forwards ago is complete before its buffer is
 * reused), so this stage goes on while the next takes them. */
static void send_ahead(ds_eval_env *e, const float *out, size_t n)
{
    const ds_pipe *p = e->pipe;
    const int k = e->ring_i++ % DS_EVAL_RING;
    MPI_Wait(&e->ring_req[k], MPI_STATUS_IGNORE);
    if (n > e->ring_n[k]) {
        free(e->ring[k]);
        e->ring[k] = ds_malloc(n * sizeof *e->ring[k]);
        e->ring_n[k] = n;
    }
    memcpy(e->ring[k], out, n * sizeof *out);
    MPI_Isend(e->ring[k], (int)n, MPI_FLOAT, p->stage + 1, TAG_X, p->group_comm, &e->ring_req[k]);
}

/* The previous stage's n floats, into e->xin. */
static const float *recv_prev(ds_eval_env *e, size_t n)
{
    const ds_pipe *p = e->pipe;
    if (e->ahead) {
        /* every stage meets the same failures of items before their
         * forwards, so the previous stage ends its items early only after
         * this one (a stop): anything else is a bug, not to wait on */
        MPI_Status st;
        MPI_Probe(p->stage - 1, MPI_ANY_TAG, p->group_comm, &st);
        if (st.MPI_TAG != TAG_X) ds_die("eval: pipeline stage %d ended its items before stage %d", p->stage - 1, p->stage);
    }
    MPI_Recv(xin(e, n), (int)n, MPI_FLOAT, p->stage - 1, TAG_X, p->group_comm, MPI_STATUS_IGNORE);
    return e->xin;
}

float *ds_eval_forward(ds_eval_env *e, const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, const int *tokens,
                       int B, int T, const int *rows, int n_rows)
{
    if (!piped(e)) return rows ? ds_llama_forward_rows(m, a, pre, tokens, B, T, rows, n_rows)
                               : ds_llama_forward(m, a, tokens, B, T);
    const ds_pipe *p = e->pipe;
    const size_t n = (size_t)B * (size_t)T * (size_t)m->cfg.dim;
    const float *x = p->first ? NULL : recv_prev(e, n);
    float *out = rows ? ds_llama_forward_rows_stage(m, a, pre, tokens, x, B, T, rows, n_rows)
                      : ds_llama_forward_stage(m, a, tokens, x, B, T);
    if (p->last) return out;
    if (e->ahead) send_ahead(e, out, n);
    else MPI_Send(out, (int)n, MPI_FLOAT, p->stage + 1, TAG_X, p->group_comm);
    return NULL;
}

/* One token of generation at position pos (ds_llama_step): the logits
 * where they are computed, else NULL. */
static float *step(ds_eval_env *e, int token, int pos)
{
    return ds_generate_step(piped(e) ? e->pipe : NULL, e->m, &e->kv, token, pos, xin(e, (size_t)e->m->cfg.dim));
}

/* The prompt's ids (with BOS) and each answer's (without), checked against
 * the model's context; *T receives the longest prompt + answer. */
typedef struct {
    int *pids, np, **aids, *na, n;
} loglik_ids;

static void loglik_ids_free(loglik_ids *x)
{
    for (int i = 0; i < x->n; i++) free(x->aids[i]);
    free(x->aids);
    free(x->na);
    free(x->pids);
}

static int loglik_encode(ds_eval_env *e, const char *prompt, int n, const char *const *answers, loglik_ids *x,
                         int *T)
{
    const int max_t = e->m->cfg.max_seq_len;
    x->n = n;
    x->pids = ds_malloc((strlen(prompt) + 3) * sizeof *x->pids);
    x->np = ds_tokenizer_encode(e->tok, prompt, 1, 0, x->pids);
    x->aids = ds_malloc((size_t)n * sizeof *x->aids);
    x->na = ds_malloc((size_t)n * sizeof *x->na);
    int rc = x->np < 0 ? DS_EXIT_INPUT : 0; /* not UTF-8: ds_err is set */
    if (x->np == 0) rc = ds_err(DS_EXIT_INPUT, "the prompt has no tokens");
    *T = 0;
    for (int i = 0; i < n; i++) {
        x->aids[i] = ds_malloc((strlen(answers[i]) + 3) * sizeof **x->aids);
        x->na[i] = rc ? 0 : ds_tokenizer_encode(e->tok, answers[i], 0, 0, x->aids[i]);
        if (x->na[i] < 0) x->na[i] = 0, rc = DS_EXIT_INPUT;
        if (x->np + x->na[i] > *T) *T = x->np + x->na[i];
    }
    if (!rc && *T > max_t)
        rc = ds_err(DS_EXIT_INPUT, "prompt and answer take %d tokens, more than the model's max_seq_len %d", *T, max_t);
    return rc;
}

/* a finite loss sum implies the logits it used were finite */
static int loglik_check(const double *ll, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(ll[i]))
            return ds_err(DS_EXIT_INPUT, "answer %d: the log-likelihood is not finite (non-finite logits)", i + 1);
    return 0;
}

/* DS_EVAL_PREFIX=0 in the environment selects the reference twin (tests,
 * docs/eval.md), as DS_SIMD=ref selects the portable kernels. */
static int prefix_wanted(void)
{
    static int want = -1;
    if (want < 0) {
        const char *v = getenv("DS_EVAL_PREFIX");
        want = !(v && strcmp(v, "0") == 0);
    }
    return want;
}

int ds_eval_loglik(ds_eval_env *e, const char *prompt, int n, const char *const *answers, double *ll)
{
    if (!prefix_wanted()) return ds_eval_loglik_ref(e, prompt, n, answers, ll);
    loglik_ids x;
    int T, rc = loglik_encode(e, prompt, n, answers, &x, &T);
    if (!rc) {
        const int np = x.np, pad = e->tok->eos_id >= 0 ? e->tok->eos_id : 0;
        if (!e->pre_act || np > e->pre_act_t) {
            ds_llama_act_free(e->pre_act);
            e->pre_act_t = (np + 31) / 32 * 32;
            if (e->pre_act_t > e->m->cfg.max_seq_len) e->pre_act_t = np;
            e->pre_act = ds_llama_act_new_fwd(e->m, 1, e->pre_act_t);
        }
        /* the prompt once: logits only at its last position (answer token 0) */
        const int last = np - 1, here = ds_eval_has_logits(e);
        ds_eval_forward(e, e->m, e->pre_act, NULL, x.pids, 1, np, &last, 1);
        int Tc = 0;
        for (int i = 0; i < n; i++) {
            ll[i] = x.na[i] && here ? ds_llama_row_nll(e->pre_act, 0, x.aids[i][0]) : 0.0;
            if (x.na[i] - 1 > Tc) Tc = x.na[i] - 1;
        }
        if (Tc > 0) {
            /* answer i's tokens 0..na-2 at positions np.., right-padded; row
             * (i, j) predicts its token j + 1 */
            int *tokens = ds_malloc((size_t)n * Tc * sizeof *tokens), *rows = ds_malloc((size_t)n * Tc * sizeof *rows);
            int nr = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < Tc; j++) {
                    tokens[(size_t)i * Tc + j] = j < x.na[i] - 1 ? x.aids[i][j] : pad;
                    if (j < x.na[i] - 1) rows[nr++] = i * Tc + j;
                }
            ds_llama_act *a = ds_eval_env_act(e, n, Tc);
            ds_eval_forward(e, e->m, a, e->pre_act, tokens, n, Tc, rows, nr);
            for (int i = 0, r = 0; i < n && here; i++) /* the same order of sums as the reference */
                for (int j = 1; j < x.na[i]; j++) ll[i] += ds_llama_row_nll(a, r++, x.aids[i][j]);
            free(tokens);
            free(rows);
        }
        for (int i = 0; i < n; i++) ll[i] = x.na[i] ? -ll[i] : 0.0;
        ds_eval_share(e, ll, n);
        if (ds_eval_scored(e)) rc = loglik_check(ll, n);
    }
    loglik_ids_free(&x);
    return rc;
}

int ds_eval_loglik_ref(ds_eval_env *e, const char *prompt, int n, const char *const *answers, double *ll)
{
    loglik_ids x;
    int T, rc = loglik_encode(e, prompt, n, answers, &x, &T);
    if (!rc) {
        /* Right padding: with causal attention the pad (EOS) after an answer
         * cannot change the logits of the positions before it. */
        const int np = x.np;
        int *tokens = ds_malloc((size_t)n * (size_t)T * sizeof *tokens);
        int *targets = ds_malloc((size_t)n * (size_t)T * sizeof *targets);
        for (int i = 0; i < n; i++) {
            int *row = tokens + (size_t)i * T;
            memcpy(row, x.pids, (size_t)np * sizeof *row);
            memcpy(row + np, x.aids[i], (size_t)x.na[i] * sizeof *row);
            for (int j = np + x.na[i]; j < T; j++) row[j] = e->tok->eos_id >= 0 ? e->tok->eos_id : 0;
        }
        for (size_t j = 0; j < (size_t)n * T; j++) targets[j] = -1;
        ds_llama_act *a = ds_eval_env_act(e, n, T);
        ds_eval_forward(e, e->m, a, NULL, tokens, n, T, NULL, 0);
        for (int i = 0; i < n && ds_eval_has_logits(e); i++) {
            /* position np - 1 + j predicts answer token j */
            int *tg = targets + (size_t)i * T + np - 1;
            for (int j = 0; j < x.na[i]; j++) tg[j] = x.aids[i][j];
            ll[i] = x.na[i] ? -ds_llama_loss_ce(a, targets, 0.0f, NULL) : 0.0;
            for (int j = 0; j < x.na[i]; j++) tg[j] = -1;
        }
        ds_eval_share(e, ll, n);
        if (ds_eval_scored(e)) rc = loglik_check(ll, n);
        free(tokens);
        free(targets);
    }
    loglik_ids_free(&x);
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
    z = step(e, ids[0], pos++);
    for (int i = 1 + skip; i < n_ids; i++) z = step(e, ids[i], pos++);
    int n = 0;
    while (n < max_new && pos < max_t) {
        /* the next token, or -1: a stop token, -2: non-finite logits (V
         * floats a step beside a forward pass: a NaN would pick token 0) */
        double next = 0;
        if (ds_eval_has_logits(e)) {
            int best = 0, end = 0;
            if (ds_find_nonfinite(DS_DTYPE_F32, z, (size_t)V) >= 0) end = -2;
            for (int j = 1; j < V && !end; j++) best = z[j] > z[best] ? j : best;
            for (int k = 0; k < n_stop && !end; k++) end = best == stop[k] ? -1 : 0;
            next = end ? end : best;
        }
        ds_eval_share(e, &next, 1);
        if (next == -2) return -1 - n;
        if (next == -1) break;
        out[n++] = (int)next;
        if (n < max_new && pos + 1 < max_t) z = step(e, (int)next, pos);
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
