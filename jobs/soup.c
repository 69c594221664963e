/* deltasoup soup: the greedy soup of model soups (Wortsman et al. 2022,
 * mlfoundations/model-soups) over 1-bit deltas, under the safety gate
 * (docs/soup.md).
 *
 * Recipe: every candidate is scored alone (base + candidate) on the first
 * --eval-task's primary metric; candidates are ranked best first (ties: list
 * order); the soup starts as the best candidate and each next one is added
 * only when the soup with it, merged by the aggregate job's --method,
 * scores strictly better, and never when that soup fails the gate (the
 * `gate` job's rule, eval/gate.h, against the base on every --gate-task).
 * The first candidate tried starts the soup when it passes the gate.
 *
 * Sharding: the base is loaded once on every rank. The individual scores
 * are spread over candidates (in rounds of one candidate per rank, each
 * rank evaluating its candidate alone on every item); each greedy step's
 * soup is merged by the aggregate job (ds_job_aggregate, files in ranges
 * per rank) and evaluated with its items in contiguous blocks across ranks.
 * Records are reduced in item order, so every number and decision is the
 * same for any number of ranks. Rank 0 decides and broadcasts the state.
 * Resumable: the state (the decisions so far) is checkpointed after each
 * round and step; SIGUSR1/SIGTERM stop at the next boundary (exit 75) and
 * the same command resumes. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "eval/gate.h"
#include "eval/plan.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "io/delta_apply.h"
#include "io/gate_results.h"
#include "io/h5_delta.h"
#include "io/model_io.h"
#include "io/outfile.h"
#include "src/checkpoint.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "src/opts.h"
#include "src/shard.h"

#define CKPT_FILE "soup.ckpt"

typedef struct {
    const char *base, *list, *method, *out, *report, *ckpt, *baseline;
    ds_strlist eval_specs, gate_specs;
    ds_gate_rule rule;
    ds_eval_opts eo;
    int overwrite, force, no_verify, requantize;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->base) return ds_err(DS_EXIT_USAGE, "--base is required");
    if (!o->list) return ds_err(DS_EXIT_USAGE, "--candidates LIST is required");
    if (!o->method) return ds_err(DS_EXIT_USAGE, "--method is required (any aggregate method)");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o SOUP.bd.h5 is required");
    if (!o->report) return ds_err(DS_EXIT_USAGE, "--report R.json is required");
    if (o->eval_specs.n == 0) return ds_err(DS_EXIT_USAGE, "--eval-task KIND:FILE is required (the held-out score)");
    if (o->baseline && o->gate_specs.n == 0) return ds_err(DS_EXIT_USAGE, "--baseline applies with --gate-task only");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint with a tokenizer"),
    DS_OPT_STRING(opts, list, "candidates", "LIST", "the candidate deltas, one path per line ('#' comments)"),
    DS_OPT_STRING(opts, method, "method", "M", "how a soup is merged: any aggregate --method (mean: the\n"
                                                 "uniform average of model soups)"),
    DS_OPT_LIST(opts, eval_specs, "eval-task", "KIND:FILE",
                "held-out task (repeatable; eval's kinds but mtbench-answers); the\n"
                "score is the first one's primary metric (docs/soup.md)"),
    DS_OPT_LIST(opts, gate_specs, "gate-task", "KIND:FILE",
                "safety gate task (repeatable): a soup must pass the gate rule\n"
                "against the base on each; without it no gate applies"),
    DS_OPT_STRING(opts, baseline, "baseline", "BASE.json",
                  "the gate's baseline: results of deltasoup eval --json OUT holding\n"
                  "one model (e.g. the current reference); default: the base, evaluated\n"
                  "here on the gate tasks"),
    DS_OPT_DOUBLE(opts, rule.min_ratio, "min-ratio", "R", 1e-9, 1, "0.95", "the gate rule's R (as deltasoup gate)"),
    DS_OPT_DOUBLE(opts, rule.abs_slack, "abs-slack", "A", 0, 1e300, "0.01", "the gate rule's A (as deltasoup gate)"),
    DS_OPT_DOUBLE(opts, rule.se_slack, "se-slack", "K", 0, 1e6, "0", "the gate rule's K (as deltasoup gate)"),
    DS_OPT_INT(opts, eo.limit, "limit", "N", 1, 1 << 30, NULL, "first N items of each task (xstest: of each label)"),
    DS_OPT_INT(opts, eo.seq_len, "seq-len", "N", 2, 1 << 24, NULL, "ppl/kl: tokens per document at most"),
    DS_OPT_INT(opts, eo.max_tokens, "max-tokens", "N", 1, 1 << 24, "32", "new tokens per generated answer"),
    DS_OPT_FLAG(opts, requantize, "requantize", "passed to aggregate: store the soup's 1-bit tensors as 1-bit"),
    DS_OPT_OUTPUT(opts, out, "SOUP.bd.h5", "the soup of the kept candidates (written by aggregate)"),
    DS_OPT_STRING(opts, report, "report", "R.json", "per candidate: score alone, soup score, kept, reason"),
    DS_OPT_CHECKPOINT(opts, ckpt, "resumable state and scratch soups (default SOUP.bd.h5.ckpt)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_FORCE(opts, force, "apply deltas made for another base"),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup soup --base B.h5 --candidates LIST --method M --eval-task KIND:FILE...\n"
             "               [--gate-task KIND:FILE...] [--min-ratio 0.95] -o SOUP.bd.h5 --report R.json",
    .about = "Greedy soup (model soups' recipe) of candidate deltas: rank them by their own held-out\n"
             "score, start from the best, add each next one only when the soup's score strictly\n"
             "improves and the soup passes the safety gate against the base (docs/soup.md).\n"
             "Score: the first --eval-task's primary metric: ppl nll and kl kl (lower is better),\n"
             "truthfulqa-mc mc1, refusal refusal_rate (higher), xstest safe_refusal_rate (lower).",
    .opts = options,
    .epilog = "SIGUSR1 or SIGTERM stops at the next candidate boundary with a checkpoint (the decisions\n"
              "so far) and exit 75; the same command resumes and ends as an uninterrupted run.\n"
              "Exit: 0 ok, 2 usage, 3 bad input (a candidate, a task, a gate task the baseline lacks),\n"
              "4 output exists.",
    .check = check};

/* ---- the run */
typedef struct {
    ds_ctx *ctx;
    opts *o;
    int n;          /* candidates */
    char **cand;    /* their paths */
    ds_eval_plan ev, gt; /* tasks only */
    ds_llama base, work;
    ds_tokenizer tok;
    int have_tok;
    ds_eval_env env;
    char ckdir[4096], ckpath[4200], try_path[4200], cur_path[4200], log_path[4200];
    ds_ckpt *rec;
    json_t *st;     /* the state: same on every rank (state_bcast) */
    json_t *gate_base; /* rank 0: the base's rows on the gate tasks */
    int stopped;
    double t0;
} soup;

static const char *kind_of(const ds_eval_task *t) { return ds_task_kind_name(t->kind); }

/* The candidates of the list: one path per line, blank lines and '#'
 * comments skipped; each must exist. */
static int read_list(soup *S, const char *list)
{
    char *text;
    size_t len;
    int rc = ds_read_file(list, &text, &len), line_no = 0;
    if (rc) return rc;
    for (char *line = text, *nl; line && !rc; line = nl) {
        nl = strchr(line, '\n');
        if (nl) *nl++ = 0;
        line_no++;
        while (*line == ' ' || *line == '\t') line++;
        char *end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = 0;
        if (!*line || *line == '#') continue;
        if (!ds_file_exists(line))
            rc = ds_err(DS_EXIT_INPUT, "--candidates %s: line %d: no such delta file '%s'", list, line_no, line);
        S->cand = ds_realloc(S->cand, sizeof(char *) * (size_t)(S->n + 1));
        S->cand[S->n++] = ds_strdup(line);
    }
    free(text);
    if (!rc && S->n == 0) rc = ds_err(DS_EXIT_USAGE, "--candidates %s: no candidate deltas in the list", list);
    return rc;
}

/* Collective: the candidates and the tasks. */
static int read_inputs(const ds_ctx *ctx, soup *S)
{
    const opts *o = S->o;
    int rc = read_list(S, o->list);
    for (int k = 0; k < 2 && !rc; k++) {
        const ds_strlist *l = k ? &o->gate_specs : &o->eval_specs;
        ds_eval_plan *tp = k ? &S->gt : &S->ev;
        for (int i = 0; i < l->n && !rc; i++) {
            rc = ds_eval_plan_add_task(tp, l->v[i]);
            if (!rc && tp->tasks[tp->n_tasks - 1].kind == DS_TASK_MTBENCH)
                rc = ds_err(DS_EXIT_USAGE, "--%s %s: mtbench-answers gives no score (use another kind)",
                            k ? "gate-task" : "eval-task", l->v[i]);
        }
    }
    for (int k = 0; k < 2 && !rc; k++) {
        ds_eval_plan *tp = k ? &S->gt : &S->ev;
        for (int i = 0; i < tp->n_tasks && !rc; i++) rc = ds_eval_task_load(&tp->tasks[i], &o->eo);
    }
    return ds_ctx_agree(ctx, rc);
}

/* Collective: a kl task's reference model. */
static int load_ref(const ds_ctx *ctx, const soup *S, ds_eval_task *t)
{
    if (t->kind != DS_TASK_KL) return 0;
    t->ref_model = ds_calloc(1, sizeof *t->ref_model);
    int rc = ds_llama_load_path_as(ctx, t->ref, t->ref_model, NULL, NULL, DS_LLAMA_LOAD_STORED);
    if (rc) {
        free(t->ref_model);
        t->ref_model = NULL;
        return rc;
    }
    if (t->ref_model->cfg.vocab_size != S->base.cfg.vocab_size || t->ref_model->cfg.max_seq_len < S->o->eo.seq_len)
        rc = ds_err(DS_EXIT_INPUT, "%s: vocabulary %d / max_seq_len %d do not fit %s", t->ref,
                    t->ref_model->cfg.vocab_size, t->ref_model->cfg.max_seq_len, S->o->base);
    return ds_ctx_agree(ctx, rc);
}

/* Collective: the base (once), its tokenizer, the model-dependent options,
 * the kl references, the working copy. */
static int load_models(const ds_ctx *ctx, soup *S)
{
    opts *o = S->o;
    int rc = ds_llama_load_path_as(ctx, o->base, &S->base, &S->tok, NULL, DS_LLAMA_LOAD_STORED);
    if (rc) return rc;
    S->have_tok = 1;
    if ((rc = ds_ctx_agree(ctx, ds_tokenizer_chat_template(&S->tok, "auto", "--chat-template", &o->eo.chat_template))))
        return rc;
    if ((rc = ds_ctx_agree(ctx, ds_eval_opts_fit(&o->eo, S->base.cfg.max_seq_len)))) return rc;
    for (int i = 0; i < S->ev.n_tasks && !rc; i++) rc = load_ref(ctx, S, &S->ev.tasks[i]);
    for (int i = 0; i < S->gt.n_tasks && !rc; i++) rc = load_ref(ctx, S, &S->gt.tasks[i]);
    if (rc) return rc;
    ds_llama_set_threads(1); /* as eval: results must not depend on the threads */
    rc = ds_ctx_agree(ctx, ds_llama_init_like(&S->work, &S->base));
    S->env = (ds_eval_env){.m = &S->work, .tok = &S->tok, .refusal = ds_refusal_is_refusal, .o = &o->eo};
    return rc;
}

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static double num_of(const json_t *j) { return json_is_number(j) ? json_number_value(j) : NAN; }

/* Rank 0 of c: the metric rows of task ti from its n records (released). */
static int reduce_rows(const ds_eval_task *t, int ti, json_t **all, json_t *rows)
{
    ds_eval_metric met[DS_EVAL_MAX_METRICS];
    const int nm = ds_eval_task_reduce(t, all, met);
    for (int k = 0; k < t->n; k++) json_decref(all[k]);
    if (nm < 0) return ds_errcode() ? ds_errcode() : DS_EXIT_FAIL;
    char *tmp = ds_strdup(t->data);
    for (int i = 0; i < nm; i++)
        json_array_append_new(rows, json_pack("{s:i, s:s, s:s, s:s, s:o, s:o, s:I, s:s}", "task_index", ti, "task",
                                              kind_of(t), "data", basename(tmp), "metric", met[i].metric, "value",
                                              num_or_null(met[i].value), "se", num_or_null(met[i].se), "n",
                                              (json_int_t)met[i].n, "better", ds_better_name(met[i].better)));
    free(tmp);
    return 0;
}

/* Collective over c (the job's ranks, or one rank alone): base + the delta
 * at path (NULL: the base) on every task of tp, the items in contiguous
 * blocks over c's ranks. *rows (rank 0 of c): a new array of metric rows. */
static int eval_model(const ds_ctx *c, soup *S, const char *path, const ds_eval_plan *tp, json_t **rows)
{
    ds_llama_copy(&S->work, &S->base);
    int rc = path ? ds_delta_apply_to_model(c, path, S->o->base, S->o->force, &S->base.cfg, S->work.n_tensors,
                                            S->work.tinfo, S->work.p)
                  : 0;
    *rows = c->rank == 0 ? json_array() : NULL;
    for (int ti = 0; ti < tp->n_tasks && !rc; ti++) {
        const ds_eval_task *t = &tp->tasks[ti];
        json_t **all;
        rc = ds_eval_task_records(c, t, &S->env, &all);
        if (!rc && c->rank == 0) rc = reduce_rows(t, ti, all, *rows);
        free(all);
        rc = ds_ctx_agree(c, rc);
    }
    return rc;
}

/* The primary metric's value (the score) of rows: task 0's first row. */
static double score_of(const json_t *rows)
{
    const json_t *r = json_array_get(rows, 0);
    return r && json_integer_value(json_object_get(r, "task_index")) == 0 ? num_of(json_object_get(r, "value")) : NAN;
}

/* The score's direction: that of the first eval task's primary metric. */
static ds_better score_dir(const soup *S)
{
    const char *m = json_string_value(json_object_get(json_object_get(S->st, "score"), "better"));
    return m && strcmp(m, "lower") == 0 ? DS_BETTER_LOWER : DS_BETTER_HIGHER;
}

/* a strictly better than b (a NaN never is). */
static int better(ds_better d, double a, double b)
{
    if (!isfinite(a)) return 0;
    if (!isfinite(b)) return 1;
    return d == DS_BETTER_LOWER ? a < b : a > b;
}

/* ---- the state: one JSON document, the same on every rank */

/* Collective: rank 0's state to every rank. */
static void state_bcast(const ds_ctx *ctx, soup *S)
{
    char *s = ctx->rank == 0 ? json_dumps(S->st, DS_EVAL_JSON_FLAGS) : NULL;
    long long len = s ? (long long)strlen(s) : 0;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, ctx->comm);
    if (!s) s = ds_calloc((size_t)len + 1, 1);
    MPI_Bcast(s, (int)len, MPI_CHAR, 0, ctx->comm);
    if (ctx->rank != 0) {
        json_decref(S->st);
        S->st = json_loads(s, 0, NULL);
        if (!S->st) ds_die("soup: state broadcast garbled");
    }
    free(s);
}

static json_t *cand_at(const soup *S, int i) { return json_array_get(json_object_get(S->st, "candidates"), (size_t)i); }
static int state_int(const soup *S, const char *k) { return (int)json_integer_value(json_object_get(S->st, k)); }

static void state_init(soup *S)
{
    json_t *c = json_array();
    for (int i = 0; i < S->n; i++)
        json_array_append_new(c, json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:s}", "file", S->cand[i], "owner", "score",
                                           "metrics", "soup_score", "kept", 0, "reason", "not tried yet"));
    const ds_eval_task *t = &S->ev.tasks[0];
    S->st = json_pack("{s:o, s:i, s:o, s:i, s:o, s:n, s:i, s:i}", "candidates", c, "scored", 0, "order", json_array(),
                      "next", 0, "score", json_pack("{s:s, s:s}", "task", kind_of(t), "data", t->data), "soup_score",
                      "n_kept", 0, "cur_kept", 0);
}

/* ---- checkpoint: the record (what identifies the run) and the state */

static ds_ckpt *ckpt_record(const soup *S)
{
    const opts *o = S->o;
    ds_ckpt *k = ds_ckpt_new("soup");
    ds_ckpt_record_int(k, "version", 1);
    ds_ckpt_record_str(k, "base", o->base);
    ds_ckpt_record_str(k, "method", o->method);
    ds_ckpt_record_int(k, "requantize", o->requantize);
    char key[64];
    for (int i = 0; i < S->n; i++) snprintf(key, sizeof key, "candidate_%d", i), ds_ckpt_record_str(k, key, S->cand[i]);
    for (int i = 0; i < o->eval_specs.n; i++)
        snprintf(key, sizeof key, "eval_task_%d", i), ds_ckpt_record_str(k, key, o->eval_specs.v[i]);
    for (int i = 0; i < o->gate_specs.n; i++)
        snprintf(key, sizeof key, "gate_task_%d", i), ds_ckpt_record_str(k, key, o->gate_specs.v[i]);
    ds_ckpt_record_int(k, "n_candidates", S->n);
    ds_ckpt_record_int(k, "n_gate_tasks", o->gate_specs.n);
    ds_ckpt_record_str(k, "baseline", o->baseline ? o->baseline : "(the base)");
    ds_ckpt_record_double(k, "min_ratio", o->rule.min_ratio);
    ds_ckpt_record_double(k, "abs_slack", o->rule.abs_slack);
    ds_ckpt_record_double(k, "se_slack", o->rule.se_slack);
    ds_ckpt_record_int(k, "limit", o->eo.limit);
    ds_ckpt_record_int(k, "seq_len", o->eo.seq_len);
    ds_ckpt_record_int(k, "max_tokens", o->eo.max_tokens);
    return k;
}

/* Rank 0: the state as bytes in an array ("state_json", U64 words). */
static int ckpt_save(const ds_ctx *ctx, soup *S)
{
    int rc = 0;
    if (ctx->rank == 0) {
        char *s = json_dumps(S->st, DS_EVAL_JSON_FLAGS);
        const size_t len = strlen(s), words = len / 8 + 1;
        char *buf = ds_calloc(words, 8);
        memcpy(buf, s, len);
        ds_ckpt_state_int(S->rec, "state_bytes", (int64_t)len);
        ds_ckpt_put_array(S->rec, "state_json", DS_DTYPE_U64, (int64_t)words, buf);
        rc = ds_ckpt_write(S->rec, S->ckpath);
        free(buf);
        free(s);
    }
    return ds_ctx_agree(ctx, rc);
}

/* Collective: the saved state when there is a checkpoint of this run. */
static int ckpt_restore(const ds_ctx *ctx, soup *S, int *resumed)
{
    int exists = ctx->rank == 0 && access(S->ckpath, F_OK) == 0, rc = 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, ctx->comm);
    *resumed = exists;
    if (!exists || ctx->rank != 0) return exists ? ds_ctx_agree(ctx, 0) : 0;
    ds_ckpt *k = NULL;
    int64_t len = 0;
    rc = ds_ckpt_read(S->ckpath, &k);
    if (!rc) rc = ds_ckpt_match(k, S->rec, S->ckpath);
    if (!rc) rc = ds_ckpt_get_int(k, "state_bytes", &len);
    char *buf = ds_calloc((size_t)len / 8 + 1, 8);
    if (!rc) rc = ds_ckpt_get_array(k, "state_json", DS_DTYPE_U64, len / 8 + 1, buf);
    json_t *st = rc ? NULL : json_loads(buf, 0, NULL);
    if (!rc && !st) rc = ds_err(DS_EXIT_INPUT, "%s: the saved state is not JSON (remove %s to start over)", S->ckpath, S->ckdir);
    if (st) json_decref(S->st), S->st = st;
    free(buf);
    ds_ckpt_free(k);
    return ds_ctx_agree(ctx, rc);
}

/* Collective: did the ranks agree to stop (a signal)? Then save. */
static int maybe_stop(const ds_ctx *ctx, soup *S)
{
    int rc = ckpt_save(ctx, S);
    if (!rc && ds_ctx_any_failed(ctx, ds_ckpt_stop_requested() != 0)) S->stopped = 1;
    return rc;
}

/* ---- individual scores: candidates spread over ranks, in rounds */

/* This rank, alone: candidate i's record {owner, score, metrics}. */
static int score_alone(const ds_ctx *ctx, soup *S, int i, char **out)
{
    ds_ctx self = {.comm = MPI_COMM_SELF, .rank = 0, .size = 1, .quiet = 1, .job = ctx->job};
    ds_delta_file *d = NULL;
    int rc = ds_delta_open(S->cand[i], MPI_COMM_SELF, &d);
    char owner[DS_NAME_MAX] = "";
    if (!rc) snprintf(owner, sizeof owner, "%s", ds_delta_get_meta(d)->owner), ds_delta_close(d);
    rc = ds_ctx_agree(&self, rc);
    json_t *rows = NULL;
    if (!rc) rc = eval_model(&self, S, S->cand[i], &S->ev, &rows);
    if (!rc) {
        json_t *r = json_pack("{s:i, s:s, s:O}", "i", i, "owner", owner, "metrics", rows);
        *out = json_dumps(r, DS_EVAL_JSON_FLAGS);
        json_decref(r);
    }
    json_decref(rows);
    return rc;
}

/* Collective: one round's records gathered on rank 0 into the state. */
static void gather_round(const ds_ctx *ctx, soup *S, const char *mine)
{
    int len = mine ? (int)strlen(mine) + 1 : 0, *lens = ds_calloc((size_t)ctx->size, sizeof(int));
    MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, ctx->comm);
    int *displs = ds_calloc((size_t)ctx->size, sizeof(int)), total = 0;
    for (int r = 0; ctx->rank == 0 && r < ctx->size; r++) displs[r] = total, total += lens[r];
    char *all = ds_calloc((size_t)total + 1, 1);
    MPI_Gatherv(mine ? mine : "", len, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, ctx->comm);
    for (int r = 0; ctx->rank == 0 && r < ctx->size; r++) {
        if (!lens[r]) continue;
        json_t *rec = json_loads(all + displs[r], 0, NULL);
        json_t *c = cand_at(S, (int)json_integer_value(json_object_get(rec, "i")));
        json_object_set(c, "owner", json_object_get(rec, "owner"));
        json_object_set(c, "metrics", json_object_get(rec, "metrics"));
        json_object_set_new(c, "score", num_or_null(score_of(json_object_get(rec, "metrics"))));
        json_decref(rec);
    }
    free(all), free(lens), free(displs);
}

/* Rank 0: the order, best score first (ties: list order; NaN last). */
static void rank_order(soup *S)
{
    const ds_better d = score_dir(S);
    int *ord = ds_malloc(sizeof(int) * (size_t)S->n);
    for (int i = 0; i < S->n; i++) ord[i] = i;
    for (int i = 1; i < S->n; i++) { /* insertion sort: stable */
        const int x = ord[i];
        const double sx = num_of(json_object_get(cand_at(S, x), "score"));
        int j = i;
        while (j > 0 && better(d, sx, num_of(json_object_get(cand_at(S, ord[j - 1]), "score")))) ord[j] = ord[j - 1], j--;
        ord[j] = x;
    }
    json_t *o = json_object_get(S->st, "order");
    for (int i = 0; i < S->n; i++) json_array_append_new(o, json_integer(ord[i]));
    free(ord);
}

/* Collective: every candidate's own score, round by round. */
static int score_all(const ds_ctx *ctx, soup *S)
{
    ds_progress prog;
    ds_progress_init(&prog, ctx, "candidates", S->n);
    int rc = 0;
    for (int r0 = state_int(S, "scored"); r0 < S->n && !rc && !S->stopped; r0 += ctx->size) {
        const int i = r0 + ctx->rank;
        char *mine = NULL;
        int my = i < S->n ? score_alone(ctx, S, i, &mine) : 0, worst = 0;
        /* a failure was printed by its rank: agree on the code quietly */
        MPI_Allreduce(&my, &worst, 1, MPI_INT, MPI_MAX, ctx->comm);
        if ((rc = worst)) {
            free(mine);
            break;
        }
        gather_round(ctx, S, mine);
        free(mine);
        const int done = r0 + ctx->size < S->n ? r0 + ctx->size : S->n;
        if (ctx->rank == 0) json_object_set_new(S->st, "scored", json_integer(done));
        if (done == S->n && ctx->rank == 0) rank_order(S);
        state_bcast(ctx, S);
        ds_progress_step(&prog, done, "scored alone");
        rc = maybe_stop(ctx, S);
    }
    return rc;
}

/* ---- the baseline: the base on the eval and the gate tasks */

/* Rank 0: 0, or DS_EXIT_INPUT naming a gate task without a gated metric of
 * finite value in the baseline (nothing to gate against). */
static int check_gate_base(const soup *S, const json_t *rows)
{
    for (int ti = 0; ti < S->gt.n_tasks; ti++) {
        int n = 0;
        size_t k;
        json_t *r;
        json_array_foreach(rows, k, r) n += json_integer_value(json_object_get(r, "task_index")) == ti &&
                                            ds_gate_direction(json_string_value(json_object_get(r, "metric"))) &&
                                            isfinite(num_of(json_object_get(r, "value")));
        if (!n)
            return ds_err(DS_EXIT_INPUT, "--gate-task %s: missing from the baseline %s: no gated metric with a finite "
                                         "value of this task and data file (nothing to gate against)",
                          S->gt.tasks[ti].spec, S->o->baseline ? S->o->baseline : "(the base)");
    }
    return 0;
}

/* Rank 0: the gate tasks' rows of --baseline FILE (matched by task kind and
 * data file name, as deltasoup gate matches them). */
static int baseline_file(const soup *S, json_t **rows)
{
    ds_gate_results r;
    int rc = ds_gate_results_load(S->o->baseline, "--baseline", NULL, &r);
    *rows = json_array();
    for (int ti = 0; ti < S->gt.n_tasks && !rc; ti++) {
        const ds_eval_task *t = &S->gt.tasks[ti];
        char *tmp = ds_strdup(t->data);
        const char *data = basename(tmp);
        for (int k = 0; k < r.n; k++)
            if (strcmp(r.rows[k].task, kind_of(t)) == 0 && strcmp(r.rows[k].data, data) == 0)
                json_array_append_new(*rows, json_pack("{s:i, s:s, s:s, s:s, s:o, s:o}", "task_index", ti, "task",
                                                       kind_of(t), "data", data, "metric", r.rows[k].metric, "value",
                                                       num_or_null(r.rows[k].value), "se", num_or_null(r.rows[k].se)));
        free(tmp);
    }
    ds_gate_results_free(&r);
    return rc;
}

/* Collective: the base's rows (once; kept in the state). */
static int baseline(const ds_ctx *ctx, soup *S)
{
    if (json_object_get(S->st, "base")) return 0;
    json_t *ev = NULL, *gt = NULL;
    int rc = eval_model(ctx, S, NULL, &S->ev, &ev);
    if (!rc && S->gt.n_tasks && !S->o->baseline) rc = eval_model(ctx, S, NULL, &S->gt, &gt);
    if (!rc && S->o->baseline && ctx->rank == 0) rc = baseline_file(S, &gt);
    if (!rc && ctx->rank == 0) {
        const json_t *r0 = json_array_get(ev, 0);
        json_object_set_new(S->st, "base", json_pack("{s:o, s:O, s:O}", "score", num_or_null(score_of(ev)), "metrics",
                                                     ev, "gate_metrics", gt ? gt : json_null()));
        json_t *sc = json_object_get(S->st, "score");
        json_object_set(sc, "metric", json_object_get(r0, "metric"));
        json_object_set(sc, "better", json_object_get(r0, "better"));
        if (gt) rc = check_gate_base(S, gt);
    }
    json_decref(ev);
    json_decref(gt);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    state_bcast(ctx, S);
    return maybe_stop(ctx, S);
}

/* Rank 0: does a soup with the gate rows cand pass the gate against the
 * base? why receives the failing metrics. */
static int gate_pass(const soup *S, const json_t *cand, char *why, size_t n)
{
    const json_t *base = json_object_get(json_object_get(S->st, "base"), "gate_metrics");
    size_t k, j;
    json_t *b, *c;
    int ok = 1;
    why[0] = 0;
    json_array_foreach(base, k, b) {
        const char *m = json_string_value(json_object_get(b, "metric"));
        const ds_better dir = ds_gate_direction(m);
        if (dir == DS_BETTER_NONE) continue;
        const json_t *y = NULL;
        json_array_foreach(cand, j, c) if (json_equal(json_object_get(c, "task_index"), json_object_get(b, "task_index")) &&
                                           strcmp(json_string_value(json_object_get(c, "metric")), m) == 0) y = c;
        double bound = NAN, v = y ? num_of(json_object_get(y, "value")) : NAN;
        if (y && ds_gate_pass(dir, num_of(json_object_get(b, "value")), v, num_of(json_object_get(b, "se")),
                              num_of(json_object_get(y, "se")), &S->o->rule, &bound))
            continue;
        snprintf(why + strlen(why), n - strlen(why), "%s%s/%s:%s %.6g %s bound %.6g", ok ? "" : ", ",
                 json_string_value(json_object_get(b, "task")), json_string_value(json_object_get(b, "data")), m, v,
                 dir == DS_BETTER_LOWER ? ">" : "<", bound);
        ok = 0;
    }
    return ok;
}

/* ---- the greedy steps */

/* Collective: the aggregate job merges paths[0..np) into out (its table
 * goes to the run's log). */
static int aggregate_to(ds_ctx *ctx, const soup *S, const char *const *paths, int np, const char *out, int overwrite)
{
    const opts *o = S->o;
    const char **av = ds_calloc((size_t)np + 16, sizeof *av);
    int ac = 0;
    av[ac++] = "aggregate", av[ac++] = "--method", av[ac++] = o->method, av[ac++] = "-o", av[ac++] = out;
    av[ac++] = "--quiet";
    if (overwrite) av[ac++] = "--overwrite";
    if (o->requantize) av[ac++] = "--requantize";
    if (o->force) av[ac++] = "--force";
    if (o->no_verify) av[ac++] = "--no-verify";
    av[ac++] = "--";
    for (int p = 0; p < np; p++) av[ac++] = paths[p];
    int saved = -1;
    if (ctx->rank == 0) {
        fflush(stdout);
        const int fd = open(S->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) saved = dup(1), dup2(fd, 1), close(fd);
    }
    const int quiet = ctx->quiet;
    int rc = ds_job_aggregate(ctx, ac, (char **)av);
    ctx->quiet = quiet;
    if (saved >= 0) fflush(stdout), dup2(saved, 1), close(saved);
    free(av);
    return rc;
}

/* The kept candidates' paths in the order kept, then extra (-1: none). */
static int kept_paths(const soup *S, int extra, const char **paths)
{
    int np = 0;
    const json_t *ord = json_object_get(S->st, "order");
    for (int p = 0; p < S->n; p++) {
        const int i = (int)json_integer_value(json_array_get(ord, (size_t)p));
        if (json_is_true(json_object_get(cand_at(S, i), "kept"))) paths[np++] = S->cand[i];
    }
    if (extra >= 0) paths[np++] = S->cand[extra];
    return np;
}

/* Rank 0: the decision on candidate i of a soup that scored score
 * (improved: it beats the soup so far, or starts it). */
static void decide(soup *S, int i, double score, int improved, int gate_ok, const char *why)
{
    json_t *c = cand_at(S, i);
    const double cur = num_of(json_object_get(S->st, "soup_score"));
    const int first = state_int(S, "n_kept") == 0, kept = improved && gate_ok;
    char reason[1200];
    if (!improved && first) snprintf(reason, sizeof reason, "its score is not finite");
    else if (!improved) snprintf(reason, sizeof reason, "the soup's score did not improve (%.9g with it, %.9g without)", score, cur);
    else if (!gate_ok) snprintf(reason, sizeof reason, "gate failed: %s", why);
    else if (first) snprintf(reason, sizeof reason, "starts the soup (best score alone%s)", S->gt.n_tasks ? " that passes the gate" : "");
    else snprintf(reason, sizeof reason, "the soup's score improved (%.9g -> %.9g)", cur, score);
    json_object_set_new(c, "soup_score", num_or_null(score));
    json_object_set_new(c, "kept", json_boolean(kept));
    json_object_set_new(c, "reason", json_string(reason));
    if (kept) {
        json_object_set_new(S->st, "soup_score", num_or_null(score));
        json_object_set_new(S->st, "n_kept", json_integer(state_int(S, "n_kept") + 1));
    }
    json_object_set_new(S->st, "next", json_integer(state_int(S, "next") + 1));
}

/* Collective: one greedy step, the candidate at position next. */
static int step(ds_ctx *ctx, soup *S)
{
    const int i = (int)json_integer_value(json_array_get(json_object_get(S->st, "order"), (size_t)state_int(S, "next")));
    const int n_kept = state_int(S, "n_kept");
    const char *soup_path = S->cand[i];
    double score = num_of(json_object_get(cand_at(S, i), "score"));
    int rc = 0;
    if (n_kept > 0) { /* kept + i, merged and evaluated */
        const char **paths = ds_calloc((size_t)S->n + 1, sizeof *paths);
        const int np = kept_paths(S, i, paths);
        rc = aggregate_to(ctx, S, paths, np, S->try_path, 1);
        free(paths);
        json_t *rows = NULL;
        if (!rc) rc = eval_model(ctx, S, S->try_path, &S->ev, &rows);
        if (!rc && ctx->rank == 0) score = score_of(rows);
        json_decref(rows);
        soup_path = S->try_path;
    }
    if (rc) return rc;
    int improved = ctx->rank == 0 && (n_kept == 0 ? isfinite(score)
                                                  : better(score_dir(S), score, num_of(json_object_get(S->st, "soup_score"))));
    MPI_Bcast(&improved, 1, MPI_INT, 0, ctx->comm);
    int gate_ok = 1;
    char why[1024] = "";
    if (improved && S->gt.n_tasks) {
        json_t *rows = NULL;
        rc = eval_model(ctx, S, soup_path, &S->gt, &rows);
        if (!rc && ctx->rank == 0) gate_ok = gate_pass(S, rows, why, sizeof why);
        if (!rc && ctx->rank == 0) json_object_set(cand_at(S, i), "gate_metrics", rows);
        json_decref(rows);
        if (rc) return rc;
    }
    if (ctx->rank == 0) {
        decide(S, i, score, improved, gate_ok, why);
        if (improved && gate_ok && n_kept > 0 && rename(S->try_path, S->cur_path) == 0)
            json_object_set_new(S->st, "cur_kept", json_integer(n_kept + 1));
    }
    state_bcast(ctx, S);
    return maybe_stop(ctx, S);
}

/* ---- the soup, the report, the table */

/* Collective: the soup of the kept candidates at -o: the last accepted
 * step's soup renamed when it is there, else merged again. */
static int write_soup(ds_ctx *ctx, soup *S)
{
    const int n_kept = state_int(S, "n_kept");
    if (n_kept == 0)
        return ds_ctx_agree(ctx, ds_err(DS_EXIT_FAIL, "no candidate was kept (see %s): no soup written", S->o->report));
    int use_cur = ctx->rank == 0 && n_kept >= 2 && state_int(S, "cur_kept") == n_kept && ds_file_exists(S->cur_path);
    MPI_Bcast(&use_cur, 1, MPI_INT, 0, ctx->comm);
    if (use_cur)
        return ds_ctx_agree(ctx, ctx->rank == 0 && rename(S->cur_path, S->o->out) != 0
                                     ? ds_err(DS_EXIT_OUTPUT, "%s: cannot rename %s to it: %s", S->o->out, S->cur_path,
                                              strerror(errno))
                                     : 0);
    const char **paths = ds_calloc((size_t)S->n + 1, sizeof *paths);
    const int np = kept_paths(S, -1, paths);
    int rc = aggregate_to(ctx, S, paths, np, S->o->out, S->o->overwrite);
    free(paths);
    return rc;
}

/* Rank 0: the report document (new reference). */
static json_t *report_json(const ds_ctx *ctx, const soup *S, int wrote)
{
    const opts *o = S->o;
    json_t *gate, *cands = json_array(), *kept = json_array(), *specs = json_array();
    for (int t = 0; t < o->gate_specs.n; t++) json_array_append_new(specs, json_string(o->gate_specs.v[t]));
    if (o->gate_specs.n)
        gate = json_pack("{s:b, s:o, s:s, s:f, s:f, s:f, s:O}", "applied", 1, "tasks", specs, "baseline_of",
                         o->baseline ? o->baseline : "base", "min_ratio", o->rule.min_ratio,
                         "abs_slack", o->rule.abs_slack, "se_slack", o->rule.se_slack, "baseline",
                         json_object_get(json_object_get(S->st, "base"), "gate_metrics"));
    else
        json_decref(specs), gate = json_pack("{s:b, s:s}", "applied", 0, "note", "no --gate-task given: no gate applied");
    const json_t *ord = json_object_get(S->st, "order");
    for (int p = 0; p < S->n; p++) {
        const int i = (int)json_integer_value(json_array_get(ord, (size_t)p));
        json_t *c = json_deep_copy(cand_at(S, i));
        json_object_set_new(c, "order", json_integer(p + 1));
        json_object_set_new(c, "list_index", json_integer(i));
        json_array_append_new(cands, c);
        if (json_is_true(json_object_get(c, "kept"))) json_array_append_new(kept, json_string(S->cand[i]));
    }
    const json_t *base = json_object_get(S->st, "base");
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:O, s:O, s:O, s:o, s:o, s:o, s:O, s:o, s:i, s:f}", "format",
                     "deltasoup.soup", "format_version", 1, "base", o->base, "method", o->method, "candidates_list",
                     o->list, "score", json_object_get(S->st, "score"), "base_score", json_object_get(base, "score"),
                     "base_metrics", json_object_get(base, "metrics"), "gate", gate, "candidates", cands, "kept", kept,
                     "soup_score", json_object_get(S->st, "soup_score"), "output",
                     wrote ? json_string(o->out) : json_null(), "ranks", ctx->size, "seconds", ds_now() - S->t0);
}

/* Rank 0: the table for people. */
static void print_table(const ds_ctx *ctx, const soup *S, const json_t *rep)
{
    const json_t *sc = json_object_get(S->st, "score");
    ds_printf0(ctx, "score: %s %s, %s is better; base %.9g\n", json_string_value(json_object_get(sc, "task")),
               json_string_value(json_object_get(sc, "metric")), json_string_value(json_object_get(sc, "better")),
               num_of(json_object_get(rep, "base_score")));
    if (!S->gt.n_tasks) ds_printf0(ctx, "gate: none (no --gate-task given: no gate applied)\n");
    ds_printf0(ctx, "%-5s %-5s %16s %16s  %-24s %s\n", "order", "kept", "score alone", "soup score", "owner", "file / reason");
    size_t k;
    json_t *c;
    json_array_foreach(json_object_get(rep, "candidates"), k, c) {
        ds_printf0(ctx, "%-5d %-5s %16.9g %16.9g  %-24s %s\n      %s\n", (int)(k + 1),
                   json_is_true(json_object_get(c, "kept")) ? "yes" : "no", num_of(json_object_get(c, "score")),
                   num_of(json_object_get(c, "soup_score")), json_string_value(json_object_get(c, "owner")),
                   json_string_value(json_object_get(c, "file")), json_string_value(json_object_get(c, "reason")));
    }
    ds_printf0(ctx, "soup: %d of %d kept (%s), score %.9g\n", state_int(S, "n_kept"), S->n, S->o->method,
               num_of(json_object_get(S->st, "soup_score")));
}

/* Collective: the report (and the table); the checkpoint folder removed. */
static int finish(ds_ctx *ctx, soup *S, int rc)
{
    const int wrote = rc == 0;
    json_t *rep = ctx->rank == 0 ? report_json(ctx, S, wrote) : NULL;
    int rrc = ds_out_write_json(ctx, S->o->report, rep, JSON_INDENT(2), 0);
    if (!rrc && ctx->rank == 0) print_table(ctx, S, rep);
    json_decref(rep);
    if (!rrc && ctx->rank == 0) {
        unlink(S->ckpath), unlink(S->try_path), unlink(S->cur_path), unlink(S->log_path);
        rmdir(S->ckdir);
    }
    return rc ? rc : rrc;
}

/* Collective: outputs refused before any work; the scratch paths. */
static int outputs_begin(const ds_ctx *ctx, soup *S)
{
    const opts *o = S->o;
    const char *outs[2] = {o->out, o->report};
    const int ni = S->n + 3 + S->ev.n_tasks + S->gt.n_tasks;
    const char **ins = ds_calloc((size_t)ni, sizeof *ins);
    int k = 0;
    ins[k++] = o->base, ins[k++] = o->list, ins[k++] = o->baseline;
    for (int i = 0; i < S->n; i++) ins[k++] = S->cand[i];
    for (int t = 0; t < S->ev.n_tasks; t++) ins[k++] = S->ev.tasks[t].data;
    for (int t = 0; t < S->gt.n_tasks; t++) ins[k++] = S->gt.tasks[t].data;
    int rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 2, ins, k));
    free(ins);
    if (!rc) rc = ds_out_begin(ctx, o->out, o->overwrite);
    if (!rc) rc = ds_out_begin(ctx, o->report, o->overwrite);
    snprintf(S->ckdir, sizeof S->ckdir, "%s%s", o->ckpt ? o->ckpt : o->out, o->ckpt ? "" : ".ckpt");
    snprintf(S->ckpath, sizeof S->ckpath, "%s/%s", S->ckdir, CKPT_FILE);
    snprintf(S->try_path, sizeof S->try_path, "%s/try.bd.h5", S->ckdir);
    snprintf(S->cur_path, sizeof S->cur_path, "%s/soup.bd.h5", S->ckdir);
    snprintf(S->log_path, sizeof S->log_path, "%s/aggregate.log", S->ckdir);
    if (!rc) rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(S->ckdir) : 0);
    return rc;
}

static void soup_free(soup *S)
{
    for (int i = 0; i < S->n; i++) free(S->cand[i]);
    free(S->cand);
    ds_eval_plan_free(&S->ev);
    ds_eval_plan_free(&S->gt);
    ds_eval_env_free(&S->env);
    if (S->work.w) ds_llama_free(&S->work);
    if (S->base.w) ds_llama_free(&S->base);
    if (S->have_tok) ds_tokenizer_free(&S->tok);
    ds_ckpt_free(S->rec);
    json_decref(S->st);
}

/* Collective: refuse a method aggregate does not know (or that cannot merge
 * two of these candidates, e.g. krum needs three) before any evaluation:
 * aggregate merges the first two candidates into the scratch soup. */
static int probe_method(ds_ctx *ctx, const soup *S)
{
    const char *paths[2] = {S->cand[0], S->n > 1 ? S->cand[1] : NULL};
    const int rc = aggregate_to(ctx, S, paths, S->n > 1 ? 2 : 1, S->try_path, 1);
    if (ctx->rank == 0) unlink(S->try_path);
    return rc;
}

/* Collective: the plan and its steps. */
static int run(ds_ctx *ctx, opts *o)
{
    soup S = {.ctx = ctx, .o = o, .t0 = ds_now()};
    int rc = read_inputs(ctx, &S), resumed = 0;
    if (!rc) rc = outputs_begin(ctx, &S);
    if (!rc) rc = probe_method(ctx, &S);
    if (!rc) rc = load_models(ctx, &S);
    if (!rc) {
        S.rec = ckpt_record(&S);
        state_init(&S);
        rc = ckpt_restore(ctx, &S, &resumed);
    }
    if (!rc && resumed) {
        state_bcast(ctx, &S);
        ds_printf0(ctx, "[soup] resuming from %s: %d of %d scored alone, %d of %d tried\n", S.ckpath,
                   state_int(&S, "scored"), S.n, state_int(&S, "next"), S.n);
    }
    if (!rc) rc = baseline(ctx, &S);
    if (!rc && !S.stopped) rc = score_all(ctx, &S);
    ds_progress prog;
    ds_progress_init(&prog, ctx, "steps", S.n);
    while (!rc && !S.stopped && state_int(&S, "next") < S.n) {
        rc = step(ctx, &S);
        ds_progress_step(&prog, state_int(&S, "next"), "%d kept", state_int(&S, "n_kept"));
    }
    if (rc && rc != DS_EXIT_CHECKPOINTED && ctx->rank == 0 && S.ckdir[0] && !ds_file_exists(S.ckpath)) {
        unlink(S.try_path), unlink(S.cur_path), unlink(S.log_path); /* nothing to resume: no scratch left */
        rmdir(S.ckdir);
    }
    if (!rc && S.stopped) {
        ds_printf0(ctx, "[soup] signal: checkpoint written to %s (%d of %d scored alone, %d of %d tried); run again "
                        "to resume\n", S.ckpath, state_int(&S, "scored"), S.n, state_int(&S, "next"), S.n);
        rc = DS_EXIT_CHECKPOINTED;
    } else if (!rc) {
        rc = finish(ctx, &S, write_soup(ctx, &S));
    }
    soup_free(&S);
    return rc;
}

int ds_job_soup(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    ds_ckpt_signals saved;
    ds_ckpt_signals_catch(&saved);
    rc = run(ctx, &o);
    ds_ckpt_signals_restore(&saved);
    ds_opts_free(&cmd, &o);
    return rc;
}
