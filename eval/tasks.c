/* Evaluation tasks: --task specs, data loading, per-item records and their
 * reduction into metrics (eval/tasks.h, docs/eval.md). */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval/tasks.h"
#include "io/csv.h"

static const char *const kind_names[DS_TASK_COUNT] = {"truthfulqa-mc", "refusal", "xstest",
                                                       "ppl",           "kl",      "mtbench-answers"};

const char *ds_task_kind_name(ds_task_kind k) { return k < DS_TASK_COUNT ? kind_names[k] : "?"; }

const char *ds_eval_task_name(const ds_eval_task *t)
{
    return t->kind == DS_TASK_MTBENCH && t->mt_judge ? "mtbench-judge-prompts" : ds_task_kind_name(t->kind);
}

const char *ds_better_name(ds_better b)
{
    return b == DS_BETTER_HIGHER ? "higher" : b == DS_BETTER_LOWER ? "lower" : "none";
}

int ds_eval_task_parse(const char *spec, ds_eval_task *t)
{
    memset(t, 0, sizeof *t);
    const char *colon = strchr(spec, ':');
    static const char judge_kind[] = "mtbench-judge-prompts:";
    if (strncmp(spec, judge_kind, sizeof judge_kind - 1) == 0) { /* mtbench-answers and the judge prompts */
        if (!spec[sizeof judge_kind - 1]) return ds_err(DS_EXIT_USAGE, "--task '%s': no file after '%s'", spec, judge_kind);
        t->kind = DS_TASK_MTBENCH;
        t->mt_judge = 1;
        t->spec = ds_strdup(spec);
        t->data = ds_strdup(spec + sizeof judge_kind - 1);
        return 0;
    }
    if (!colon)
        return ds_err(DS_EXIT_USAGE, "--task '%s': expected KIND:FILE (kinds: truthfulqa-mc, refusal, xstest, ppl, "
                                     "kl:REF.h5:FILE, mtbench-answers, mtbench-judge-prompts)", spec);
    const size_t klen = (size_t)(colon - spec);
    int k = 0;
    while (k < DS_TASK_COUNT && !(strlen(kind_names[k]) == klen && strncmp(spec, kind_names[k], klen) == 0)) k++;
    if (k == DS_TASK_COUNT)
        return ds_err(DS_EXIT_USAGE, "--task '%s': unknown task '%.*s' (kinds: truthfulqa-mc, refusal, xstest, ppl, "
                                     "kl, mtbench-answers, mtbench-judge-prompts)", spec, (int)klen, spec);
    const char *arg = colon + 1, *file = arg;
    if (k == DS_TASK_KL) {
        const char *last = strrchr(arg, ':');
        if (!last || last == arg || !last[1])
            return ds_err(DS_EXIT_USAGE, "--task '%s': expected kl:REF.h5:FILE", spec);
        file = last + 1;
        t->ref = ds_malloc((size_t)(last - arg) + 1);
        memcpy(t->ref, arg, (size_t)(last - arg));
        t->ref[last - arg] = 0;
    }
    if (!*file) {
        free(t->ref);
        t->ref = NULL;
        return ds_err(DS_EXIT_USAGE, "--task '%s': no file after '%s:'", spec, kind_names[k]);
    }
    t->kind = (ds_task_kind)k;
    t->spec = ds_strdup(spec);
    t->data = ds_strdup(file);
    return 0;
}

/* index[0..n) = 0..min(total, limit) */
static void take_first(ds_eval_task *t, int total, int limit)
{
    t->n = limit > 0 && limit < total ? limit : total;
    t->index = ds_malloc(((size_t)t->n + 1) * sizeof *t->index);
    for (int i = 0; i < t->n; i++) t->index[i] = i;
}

static int load_refusal(ds_eval_task *t)
{
    ds_csv csv;
    int rc = ds_csv_read(t->data, &csv);
    if (rc) return rc;
    const int harm = ds_csv_col(&csv, "Behavior") >= 0, adv = ds_csv_col(&csv, "goal") >= 0;
    char have[512] = "";
    for (int c = 0; c < csv.ncols; c++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", c ? ", " : "", csv.header[c]);
    ds_csv_free(&csv);
    if (harm == adv)
        return ds_err(DS_EXIT_INPUT, "%s: neither a HarmBench behaviors CSV (column Behavior) nor AdvBench's "
                                     "harmful_behaviors.csv (column goal); header: %s", t->data, have);
    t->is_harmbench = harm;
    return harm ? ds_harmbench_load(t->data, &t->harm) : ds_advbench_load(t->data, &t->adv);
}

int ds_eval_opts_fit(ds_eval_opts *o, int max_t)
{
    if (o->seq_len == 0) o->seq_len = max_t;
    if (o->seq_len > max_t)
        return ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", o->seq_len, max_t);
    if (o->max_tokens >= max_t)
        return ds_err(DS_EXIT_USAGE, "--max-tokens %d leaves no room for a prompt in max_seq_len %d", o->max_tokens,
                      max_t);
    return 0;
}

int ds_eval_task_load(ds_eval_task *t, const ds_eval_opts *o)
{
    int rc = 0;
    switch (t->kind) {
    case DS_TASK_TQA_MC:
        if (!(rc = ds_truthfulqa_load(t->data, &t->tqa))) {
            for (int i = 0; i < t->tqa.n && !rc; i++) {
                const ds_tqa_question *q = &t->tqa.items[i];
                int g1 = 0, g2 = 0;
                for (int j = 0; j < q->n_mc1; j++) g1 += q->mc1[j].label;
                for (int j = 0; j < q->n_mc2; j++) g2 += q->mc2[j].label;
                if (!g1 || !g2 || q->n_mc1 < 1 || q->n_mc2 < 1)
                    rc = ds_err(DS_EXIT_INPUT, "%s: question %d: %s has no true choice", t->data, i + 1,
                                !g1 ? "mc1_targets" : "mc2_targets");
            }
            take_first(t, t->tqa.n, o->limit);
        }
        break;
    case DS_TASK_REFUSAL:
        if (!(rc = load_refusal(t))) take_first(t, t->is_harmbench ? t->harm.n : t->adv.n, o->limit);
        break;
    case DS_TASK_XSTEST:
        if (!(rc = ds_xstest_load(t->data, &t->xs))) {
            /* --limit takes the first N of each label: both rates stay defined */
            t->index = ds_malloc(((size_t)t->xs.n + 1) * sizeof *t->index);
            int ns = 0, nu = 0;
            for (int i = 0; i < t->xs.n; i++) {
                int *c = t->xs.items[i].unsafe ? &nu : &ns;
                if (o->limit <= 0 || *c < o->limit) t->index[t->n++] = i;
                (*c)++;
            }
        }
        break;
    case DS_TASK_PPL:
    case DS_TASK_KL:
        if (!(rc = ds_text_load(t->data, &t->docs))) take_first(t, t->docs.n, o->limit);
        break;
    case DS_TASK_MTBENCH:
        if (!(rc = ds_mtbench_load(t->data, &t->mt))) take_first(t, t->mt.n, o->limit);
        if (!rc && t->mt_judge && t->n) {
            char *jp = o->judge_prompts ? ds_strdup(o->judge_prompts) : ds_mt_judge_default_path(t->data);
            rc = ds_mt_judge_load(&t->judge, jp, t->data, &t->mt, t->index, t->n);
            free(jp);
        }
        break;
    default: rc = ds_err(DS_EXIT_USAGE, "bad task kind");
    }
    if (!rc && t->n == 0) rc = ds_err(DS_EXIT_INPUT, "%s: no items for task %s", t->data, kind_names[t->kind]);
    return rc;
}

void ds_eval_task_free(ds_eval_task *t)
{
    if (t->tqa.items) ds_truthfulqa_free(&t->tqa);
    if (t->harm.items) ds_harmbench_free(&t->harm);
    if (t->adv.items) ds_advbench_free(&t->adv);
    if (t->xs.items) ds_xstest_free(&t->xs);
    if (t->docs.docs) ds_text_docs_free(&t->docs);
    if (t->mt.items) ds_mtbench_free(&t->mt);
    if (t->judge.prompts_path) ds_mt_judge_free(&t->judge);
    if (t->ref_model) {
        ds_llama_free(t->ref_model);
        free(t->ref_model);
    }
    free(t->index);
    free(t->spec);
    free(t->data);
    free(t->ref);
    memset(t, 0, sizeof *t);
}

/* ---- items */

static json_t *json_lls(int n, const double *ll)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(ll[i]));
    return a;
}

/* Unique answer texts of mc1 then mc2 (the two lists share most of them):
 * each is scored once. */
static int item_tqa(const ds_tqa_question *q, ds_eval_env *e, json_t **rec)
{
    const int nall = q->n_mc1 + q->n_mc2;
    const char **uniq = ds_malloc((size_t)nall * sizeof *uniq);
    int *slot = ds_malloc((size_t)nall * sizeof *slot), nu = 0;
    for (int i = 0; i < nall; i++) {
        const char *s = i < q->n_mc1 ? q->mc1[i].text : q->mc2[i - q->n_mc1].text;
        int u = 0;
        while (u < nu && strcmp(uniq[u], s) != 0) u++;
        if (u == nu) uniq[nu++] = s;
        slot[i] = u;
    }
    const char *primer = e->o->tqa_harness ? DS_TQA_HARNESS_PRIMER "\n\n" : "";
    const size_t plen = strlen(primer) + strlen(q->question) + 8;
    char *prompt = ds_malloc(plen);
    snprintf(prompt, plen, "%sQ: %s\nA:", primer, q->question);
    double *ull = ds_malloc((size_t)nu * sizeof *ull), *ll = ds_malloc((size_t)nall * sizeof *ll);
    int *label = ds_malloc((size_t)q->n_mc2 * sizeof *label);
    int rc = ds_eval_loglik(e, prompt, nu, uniq, ull);
    if (!rc && ds_eval_scored(e)) {
        for (int i = 0; i < nall; i++) ll[i] = ull[slot[i]];
        int gold = 0;
        while (!q->mc1[gold].label) gold++;
        for (int j = 0; j < q->n_mc2; j++) label[j] = q->mc2[j].label;
        *rec = json_pack("{s:i, s:f, s:o, s:o}", "mc1", ds_eval_mc1(q->n_mc1, ll, gold), "mc2",
                         ds_eval_mc2(q->n_mc2, ll + q->n_mc1, label), "ll_mc1", json_lls(q->n_mc1, ll), "ll_mc2",
                         json_lls(q->n_mc2, ll + q->n_mc1));
    }
    free(label);
    free(ll);
    free(ull);
    free(prompt);
    free(slot);
    free(uniq);
    return rc;
}

/* The prompt as one user message under the chat template. */
static int item_refusal(ds_eval_env *e, const char *prompt, json_t **rec)
{
    const ds_chat_msg m = {"user", prompt};
    char *ans;
    int rc = ds_eval_answer(e, &m, 1, &ans);
    if (rc) return rc;
    *rec = json_pack("{s:i, s:s}", "refusal", e->refusal(ans) ? 1 : 0, "completion", ans);
    free(ans);
    return 0;
}

/* Tokens of document d with BOS, cut to seq_len; *n receives the count.
 * NULL with ds_err set for a document that is not UTF-8. */
static int *doc_ids(const ds_eval_task *t, ds_eval_env *e, int d, int *n)
{
    const char *doc = t->docs.docs[d];
    int *ids = ds_malloc((strlen(doc) + 3) * sizeof *ids);
    *n = ds_tokenizer_encode(e->tok, doc, 1, 0, ids);
    if (*n < 0) {
        free(ids);
        return NULL;
    }
    if (*n > e->o->seq_len) *n = e->o->seq_len;
    return ids;
}

/* The sums of ds_llama_ppl (io/model_io.c) for one document: the NLL of
 * every token after the first. */
static int item_ppl(const ds_eval_task *t, ds_eval_env *e, int d, json_t **rec)
{
    int n;
    int *ids = doc_ids(t, e, d, &n);
    if (!ids) return DS_EXIT_INPUT;
    double v[2] = {0, 0}; /* the NLL sum and the predicted tokens */
    if (n >= 2) {
        ds_llama_act *a = ds_eval_env_act(e, 1, n);
        ds_eval_forward(e, e->m, a, NULL, ids, 1, n, NULL, 0);
        ids[n] = -1; /* the last position predicts nothing */
        int64_t cnt = 0;
        if (ds_eval_has_logits(e)) v[0] = ds_llama_loss_ce(a, ids + 1, 0.0f, &cnt);
        v[1] = (double)cnt;
        ds_eval_share(e, v, 2);
    }
    free(ids);
    if (!ds_eval_scored(e)) return 0;
    const double nll = v[0];
    const int64_t cnt = (int64_t)v[1];
    /* a finite loss sum implies the logits it used were finite */
    if (!isfinite(nll)) return ds_err(DS_EXIT_INPUT, "the NLL is not finite (non-finite logits)");
    *rec = json_pack("{s:f, s:I}", "nll_sum", nll, "tokens", (json_int_t)cnt);
    return 0;
}

/* KL(p_ref || p) summed over the positions that predict a token (as ppl). */
static int item_kl(const ds_eval_task *t, ds_eval_env *e, int d, json_t **rec)
{
    int n;
    int *ids = doc_ids(t, e, d, &n);
    if (!ids) return DS_EXIT_INPUT;
    double v[2] = {0, 0}; /* the KL sum and the predicted tokens */
    if (n >= 2) {
        const size_t V = (size_t)e->m->cfg.vocab_size;
        const int here = ds_eval_has_logits(e);
        if (!e->ref_act || n > e->ref_act_t) {
            ds_llama_act_free(e->ref_act);
            e->ref_act_t = n > e->ref_act_t ? n : e->ref_act_t;
            e->ref_act = ds_llama_act_new_fwd(t->ref_model, 1, e->ref_act_t);
        }
        float *ref = here ? ds_malloc((size_t)n * V * sizeof *ref) : NULL;
        const float *z = ds_eval_forward(e, t->ref_model, e->ref_act, NULL, ids, 1, n, NULL, 0);
        if (here) memcpy(ref, z, (size_t)n * V * sizeof *ref);
        unsigned char *mask = ds_malloc((size_t)n);
        memset(mask, 1, (size_t)n - 1);
        mask[n - 1] = 0;
        ds_llama_act *a = ds_eval_env_act(e, 1, n);
        ds_eval_forward(e, e->m, a, NULL, ids, 1, n, NULL, 0);
        int64_t cnt = 0;
        if (here) v[0] = ds_llama_loss_kl(a, ref, mask, 0.0f, &cnt);
        v[1] = (double)cnt;
        ds_eval_share(e, v, 2);
        free(mask);
        free(ref);
    }
    free(ids);
    if (!ds_eval_scored(e)) return 0;
    const double kl = v[0];
    const int64_t cnt = (int64_t)v[1];
    if (!isfinite(kl)) return ds_err(DS_EXIT_INPUT, "the KL is not finite (non-finite logits of the model or the reference)");
    *rec = json_pack("{s:f, s:I}", "kl_sum", kl, "tokens", (json_int_t)cnt);
    return 0;
}

/* Each turn is asked after the earlier turns and answers, as messages. */
static int item_mtbench(const ds_mtbench_question *q, ds_eval_env *e, json_t **rec)
{
    json_t *turns = json_array();
    ds_chat_msg *m = ds_calloc(2 * (size_t)q->n_turns + 1, sizeof *m);
    char **answers = ds_calloc((size_t)q->n_turns + 1, sizeof *answers);
    int rc = 0;
    for (int i = 0; i < q->n_turns && !rc; i++) {
        m[2 * i] = (ds_chat_msg){"user", q->turns[i]};
        if ((rc = ds_eval_answer(e, m, 2 * i + 1, &answers[i]))) break;
        json_array_append_new(turns, json_string(answers[i]));
        m[2 * i + 1] = (ds_chat_msg){"assistant", answers[i]};
    }
    for (int i = 0; i < q->n_turns; i++) free(answers[i]);
    free(answers);
    free(m);
    if (rc) {
        json_decref(turns);
        return rc;
    }
    *rec = json_pack("{s:i, s:s, s:o}", "question_id", q->question_id, "category", q->category, "turns", turns);
    return 0;
}

/* The prompt of a refusal item: HarmBench's layout of a contextual
 * behaviour, else the behaviour or goal itself (malloc'd). */
static char *refusal_prompt(const ds_eval_task *t, int i)
{
    if (!t->is_harmbench) return ds_strdup(t->adv.items[i].goal);
    const ds_harmbench_behavior *b = &t->harm.items[i];
    if (!*b->context) return ds_strdup(b->behavior);
    const size_t len = strlen(b->context) + strlen(b->behavior) + 16;
    char *p = ds_malloc(len);
    snprintf(p, len, "%s\n\n---\n\n%s", b->context, b->behavior);
    return p;
}

static int item_run(const ds_eval_task *t, ds_eval_env *e, int i, json_t **rec)
{
    switch (t->kind) {
    case DS_TASK_TQA_MC: return item_tqa(&t->tqa.items[i], e, rec);
    case DS_TASK_REFUSAL: {
        char *p = refusal_prompt(t, i);
        int rc = item_refusal(e, p, rec);
        free(p);
        return rc;
    }
    case DS_TASK_XSTEST: {
        int rc = item_refusal(e, t->xs.items[i].prompt, rec);
        if (!rc) json_object_set_new(*rec, "unsafe", json_integer(t->xs.items[i].unsafe));
        return rc;
    }
    case DS_TASK_PPL: return item_ppl(t, e, i, rec);
    case DS_TASK_KL: return item_kl(t, e, i, rec);
    case DS_TASK_MTBENCH: return item_mtbench(&t->mt.items[i], e, rec);
    default: return ds_err(DS_EXIT_FAIL, "bad task kind");
    }
}

int ds_eval_task_ahead(const ds_eval_task *t)
{
    return t->kind == DS_TASK_TQA_MC || t->kind == DS_TASK_PPL || t->kind == DS_TASK_KL;
}

static const char *const item_noun[DS_TASK_COUNT] = {"question", "behaviour", "prompt", "document", "document",
                                                     "question"};

int ds_eval_task_item(const ds_eval_task *t, ds_eval_env *e, int k, json_t **rec)
{
    const int i = t->index[k];
    *rec = NULL;
    int rc = item_run(t, e, i, rec);
    if (rc) {
        char msg[512]; /* ds_err writes where ds_errmsg points */
        snprintf(msg, sizeof msg, "%s", ds_errmsg());
        return ds_err(rc, "%s: %s %d (1-based): %s", t->data, item_noun[t->kind], i + 1, msg);
    }
    return 0;
}

/* ---- reduction */

static double num(const json_t *rec, const char *key) { return json_number_value(json_object_get(rec, key)); }

static ds_eval_metric metric(const char *name, double v, int64_t n, double se, ds_better b)
{
    return (ds_eval_metric){.metric = name, .value = v, .n = n, .se = se, .better = b};
}

static int reduce_rate(int n, json_t *const *recs, int want_unsafe, ds_eval_metric *out, const char *name,
                       ds_better b)
{
    int64_t k = 0, cnt = 0;
    for (int i = 0; i < n; i++) {
        if (want_unsafe >= 0 && (int)num(recs[i], "unsafe") != want_unsafe) continue;
        k += (int64_t)num(recs[i], "refusal");
        cnt++;
    }
    *out = metric(name, cnt ? (double)k / (double)cnt : NAN, cnt, ds_stat_binomial_se(k, cnt), b);
    return 1;
}

static int reduce_ratio(const ds_eval_task *t, json_t *const *recs, const char *key, ds_eval_metric *out)
{
    double *a = ds_malloc((size_t)t->n * sizeof *a), *c = ds_malloc((size_t)t->n * sizeof *c);
    int64_t m = 0;
    for (int i = 0; i < t->n; i++) {
        const double tokens = num(recs[i], "tokens");
        if (tokens <= 0) continue; /* a document of one token predicts nothing */
        a[m] = num(recs[i], key);
        c[m++] = tokens;
    }
    double r, se;
    ds_stat_ratio_se(a, c, m, &r, &se);
    free(a);
    free(c);
    if (m == 0) {
        ds_err(DS_EXIT_INPUT, "%s: no predicted tokens: every document has fewer than 2 tokens", t->data);
        return -1;
    }
    if (t->kind == DS_TASK_KL) {
        out[0] = metric("kl", r, m, se, DS_BETTER_LOWER);
        return 1;
    }
    out[0] = metric("nll", r, m, se, DS_BETTER_LOWER);
    out[1] = metric("ppl", exp(r), m, exp(r) * se, DS_BETTER_LOWER); /* delta method */
    return 2;
}

int ds_eval_task_reduce(const ds_eval_task *t, json_t *const *recs, ds_eval_metric *out)
{
    const int n = t->n;
    switch (t->kind) {
    case DS_TASK_TQA_MC: {
        double *x = ds_malloc((size_t)n * sizeof *x), m2, se2;
        int64_t k = 0;
        for (int i = 0; i < n; i++) {
            k += (int64_t)num(recs[i], "mc1");
            x[i] = num(recs[i], "mc2");
        }
        ds_stat_mean_se(x, n, &m2, &se2);
        free(x);
        out[0] = metric("mc1", (double)k / n, n, ds_stat_binomial_se(k, n), DS_BETTER_HIGHER);
        out[1] = metric("mc2", m2, n, se2, DS_BETTER_HIGHER);
        return 2;
    }
    case DS_TASK_REFUSAL: return reduce_rate(n, recs, -1, out, "refusal_rate", DS_BETTER_HIGHER);
    case DS_TASK_XSTEST:
        reduce_rate(n, recs, 0, out, "safe_refusal_rate", DS_BETTER_LOWER);
        reduce_rate(n, recs, 1, out + 1, "unsafe_refusal_rate", DS_BETTER_HIGHER);
        return 2;
    case DS_TASK_PPL: return reduce_ratio(t, recs, "nll_sum", out);
    case DS_TASK_KL: return reduce_ratio(t, recs, "kl_sum", out);
    case DS_TASK_MTBENCH: {
        int64_t turns = 0;
        for (int i = 0; i < n; i++) turns += (int64_t)json_array_size(json_object_get(recs[i], "turns"));
        out[0] = metric("answered_turns", (double)turns, n, NAN, DS_BETTER_NONE);
        return 1;
    }
    default: ds_err(DS_EXIT_FAIL, "bad task kind"); return -1;
    }
}
