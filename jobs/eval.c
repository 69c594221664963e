/* deltasoup eval: quality metrics of the base model and of base + each
 * delta (docs/eval.md). Two reports from one option table:
 * - the plain --ppl report (one model, one text: NLL per predicted token and
 *   perplexity), when no option of the task runner is given; documents are
 *   shared out across ranks (ds_llama_ppl);
 * - the task runner (--task, more than one --delta, --delta-list, output
 *   files, ...): every task over the base and each delta. The base is loaded
 *   once; for each delta every rank copies the base weights and adds the
 *   delta; each task's items are split into contiguous blocks across ranks,
 *   the per-item records are gathered on rank 0 in item order and reduced
 *   there, so a delta's numbers depend neither on the number of ranks nor on
 *   the other deltas of the job. */
#include "config.h"
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "eval/plan.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "io/delta_apply.h"
#include "io/model_io.h"
#include "io/outfile.h"
#include "src/chat.h"
#include "src/jobs.h"
#include "src/hash.h"
#include "src/membudget.h"
#include "src/opts.h"
#include "src/shard.h"

/* --delta, --delta-list, --task and --ppl, in the order given */
typedef struct {
    char kind; /* 'd'elta, delta 'l'ist, 't'ask, 'p'pl */
    const char *value;
} model_task_arg;

typedef struct {
    const char *model, *json, *csv, *items, *answers_dir, *chat_opt, *lm_eval_json, *judge_dir;
    int overwrite, force, n_max_tokens;
    ds_eval_opts eo;
    int n_args;
    model_task_arg *args;
    int runner; /* the task runner, not the plain --ppl report */
    int pipeline; /* --pipeline P: stages per group; 0: auto */
    double mem_per_rank; /* --mem-per-rank, GiB (0: the node's memory shared) */
    ds_eval_plan plan;
    int no_verify;
} opts;

/* --json alone: the results go to stdout (compared by address: a file named "-" is a file) */
static const char json_stdout[] = "-";

static int push_arg(void *p, char kind, const char *value)
{
    opts *o = p;
    o->args = ds_realloc(o->args, (size_t)(o->n_args + 1) * sizeof *o->args);
    o->args[o->n_args++] = (model_task_arg){kind, value};
    return 0;
}
static int on_delta(void *o, const char *v) { return push_arg(o, 'd', v); }
static int on_list(void *o, const char *v) { return push_arg(o, 'l', v); }
static int on_task(void *o, const char *v) { return push_arg(o, 't', v); }
static int on_ppl(void *o, const char *v) { return push_arg(o, 'p', v); }

static int count_args(const opts *o, char kind)
{
    int n = 0;
    for (int i = 0; i < o->n_args; i++) n += o->args[i].kind == kind;
    return n;
}

/* The last value of an argument kind, or NULL. */
static const char *last_arg(const opts *o, char kind)
{
    for (int i = o->n_args - 1; i >= 0; i--)
        if (o->args[i].kind == kind) return o->args[i].value;
    return NULL;
}

static const char *const tqa_prompts[] = {"plain", "harness", NULL};

static const ds_opt options[] = {
    DS_OPT_STRING(opts, model, "model", "B.h5", "base checkpoint with a tokenizer"),
    DS_OPT_CALL("delta", "D.bd.h5", on_delta,
                "a delta to evaluate, base + D (repeatable); with none, the base\nitself (\"base\")"),
    DS_OPT_CALL("delta-list", "FILE", on_list, "more deltas, one path per line (# comments; a line \"base\" = the base)"),
    DS_OPT_CALL("task", "KIND:FILE", on_task, "a task (repeatable; the kinds below)"),
    DS_OPT_CALL("ppl", "TEXT", on_ppl, "NLL per token and perplexity of a text (alone: the plain report)"),
    DS_OPT_INT(opts, eo.limit, "limit", "N", 1, 1 << 30, NULL, "first N items of each task (xstest: of each label)"),
    {.name = "max-tokens", .type = DS_OPT_T_INT, .off = offsetof(opts, eo.max_tokens), .meta = "N",
     .help = "new tokens per generated answer", .def = "32", .lo = 1, .hi = 1 << 24,
     .given = DS_OPT_GIVEN(opts, n_max_tokens)},
    DS_OPT_STRING_DEF(opts, chat_opt, "chat-template", "NAME", "auto",
                      "refusal/xstest/mtbench-answers: each prompt as a user message under the\n"
                      "chat template: auto (the model's recorded one, else none), llama3,\n"
                      "llama2, mistral, chatml, or none (\"User: {prompt}\\nAssistant:\")"),
    DS_OPT_CHOICE(opts, eo.tqa_harness, "truthfulqa-prompt", "P", tqa_prompts, "plain",
                  "truthfulqa-mc: plain (\"Q: {question}\\nA:\") or harness (lm-evaluation-harness's\n"
                  "6-shot QA primer before it; about 380 tokens with a 512-piece vocabulary)"),
    DS_OPT_PIPELINE(opts, pipeline, ""),
    DS_OPT_MEM_PER_RANK(opts, mem_per_rank),
    DS_OPT_INT(opts, eo.seq_len, "seq-len", "N", 2, 1 << 24, NULL,
               "ppl/kl: tokens per document at most (without it: the model's max_seq_len)"),
    {.name = "json", .type = DS_OPT_T_OPTSTR, .off = offsetof(opts, json), .meta = "OUT", .def = json_stdout,
     .help = "the results as JSON to OUT (without OUT: to stdout instead of the table)"},
    DS_OPT_STRING(opts, csv, "csv", "OUT", "the results as CSV"),
    DS_OPT_STRING(opts, items, "items", "OUT", "every item's record as JSON lines (audit, references)"),
    DS_OPT_STRING(opts, lm_eval_json, "lm-eval-json", "OUT",
                  "the results as lm-evaluation-harness (v0.4) writes them (several models:\n"
                  "OUT with .<model_id> before .json, one file each)"),
    DS_OPT_STRING(opts, answers_dir, "answers-dir", "DIR",
                  "mtbench-answers: DIR/<model_id>.jsonl (without it: the directory\nof --json OUT or --csv OUT)"),
    DS_OPT_STRING(opts, eo.judge_prompts, "judge-prompts", "FILE",
                  "mtbench-judge-prompts: FastChat's judge_prompts.jsonl (default: the one\n"
                  "beside the questions file)"),
    DS_OPT_STRING(opts, judge_dir, "judge-dir", "DIR",
                  "mtbench-judge-prompts: DIR/<model_id>.judge-prompts.jsonl (default: the\n"
                  "answers' directory)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_FORCE(opts, force, "apply deltas made for another base"),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

/* The plain report: one --ppl, at most one --delta, no output file. */
static int check_plain(opts *o)
{
    if (o->overwrite) return ds_err(DS_EXIT_USAGE, "--overwrite: no output file to replace (--json OUT, --csv, --items)");
    if (!o->model) return ds_err(DS_EXIT_USAGE, "--model is required");
    if (!last_arg(o, 'p')) return ds_err(DS_EXIT_USAGE, "--ppl TEXT or --task KIND:FILE is required");
    return 0;
}

/* The mtbench-judge-prompts task of the plan, or NULL. */
static const ds_eval_task *judge_task(const ds_eval_plan *p)
{
    for (int i = 0; i < p->n_tasks; i++)
        if (p->tasks[i].kind == DS_TASK_MTBENCH && p->tasks[i].mt_judge) return &p->tasks[i];
    return NULL;
}

/* The task runner's plan: models and tasks in the order given, then the rules. */
static int check_runner(opts *o)
{
    ds_eval_plan *p = &o->plan;
    int rc = 0;
    for (int i = 0; i < o->n_args && !rc; i++) {
        const char *v = o->args[i].value;
        switch (o->args[i].kind) {
        case 'd': rc = ds_eval_plan_add_delta(p, v); break;
        case 'l': rc = ds_eval_plan_read_list(p, v); break;
        case 't': rc = ds_eval_plan_add_task(p, v); break;
        default: {
            char *spec = ds_malloc(strlen(v) + 5);
            sprintf(spec, "ppl:%s", v);
            rc = ds_eval_plan_add_task(p, spec);
            free(spec);
        }
        }
    }
    const int explicit_deltas = count_args(o, 'd') + count_args(o, 'l') > 0;
    const char *json_file = o->json != json_stdout ? o->json : NULL;
    if (rc) return rc;
    if (!o->model) return ds_err(DS_EXIT_USAGE, "--model is required");
    if (p->n_tasks == 0) return ds_err(DS_EXIT_USAGE, "no task: give --task KIND:FILE (see --help)");
    if (explicit_deltas && p->n_models == 0) return ds_err(DS_EXIT_USAGE, "--delta-list: no delta in the list");
    if (p->n_models == 0) ds_eval_plan_add_model(p, NULL);
    const int n_mt = ds_eval_plan_count(p, DS_TASK_MTBENCH);
    if (n_mt > 1)
        return ds_err(DS_EXIT_USAGE, "mtbench-answers / mtbench-judge-prompts: give one of them once (one answer "
                                     "file per model; mtbench-judge-prompts writes the answers too)");
    if ((o->eo.judge_prompts || o->judge_dir) && !judge_task(p))
        return ds_err(DS_EXIT_USAGE, "--%s: no mtbench-judge-prompts task", o->judge_dir ? "judge-dir" : "judge-prompts");
    if (n_mt && !o->answers_dir && !json_file && !o->csv)
        return ds_err(DS_EXIT_USAGE, "mtbench-answers needs --answers-dir DIR (or --json OUT / --csv OUT)");
    return n_mt ? ds_eval_plan_unique_ids(p) : 0;
}

static int check(void *p)
{
    opts *o = p;
    if (strcmp(o->chat_opt, "auto") != 0 && !ds_chat_known(o->chat_opt))
        return ds_err(DS_EXIT_USAGE, "--chat-template: expected auto or one of %s, got '%s'", ds_chat_names(),
                      o->chat_opt);
    o->runner = count_args(o, 't') || count_args(o, 'l') || count_args(o, 'd') > 1 || o->csv || o->items ||
                o->answers_dir || o->lm_eval_json || o->eo.limit || o->n_max_tokens || (o->json && o->json != json_stdout);
    return o->runner ? check_runner(o) : check_plain(o);
}

static const ds_cmd cmd = {
    .usage = "deltasoup eval --model B.h5 [--delta D.bd.h5]... [--delta-list FILE] --task KIND:FILE... [options]\n"
             "deltasoup eval --model M.h5 [--delta D.bd.h5 [--force]] --ppl TEXT [--seq-len N] [--json]",
    .about = "Evaluate the base model and/or base + each delta on every task (docs/eval.md).\n"
             "--ppl TEXT without an option of the task runner (--task, a second --delta, --delta-list,\n"
             "--limit, --max-tokens, --json OUT, --csv, --items, --answers-dir, --lm-eval-json) is the\n"
             "plain perplexity report of one model: the text splits into documents on blank lines or\n"
             "<|endoftext|>; each is tokenized with BOS and cut to --seq-len tokens; every token after\n"
             "BOS is predicted. Documents are shared out across ranks; the result does not depend on\n"
             "their number.",
    .opts = options,
    .epilog = "Task kinds (--task KIND:FILE):\n"
              "  truthfulqa-mc:mc_task.json   MC1 and MC2 (prompt \"Q: {question}\\nA:\", answer \" {choice}\")\n"
              "  refusal:FILE.csv             refusal rate on HarmBench or AdvBench behaviours (by header)\n"
              "  xstest:xstest_prompts.csv    refusal rate on the safe and on the unsafe prompts\n"
              "  ppl:TEXT                     NLL per token and perplexity (also: --ppl TEXT)\n"
              "  kl:REF.h5:TEXT               KL(p_ref || p) per token against a reference checkpoint\n"
              "  mtbench-answers:question.jsonl  answers in FastChat's answer JSONL format\n"
              "  mtbench-judge-prompts:question.jsonl  the answers, and FastChat's single-answer judge\n"
              "                               prompts filled with them (--judge-prompts, --judge-dir)\n"
              "Exit: 0 ok, 2 usage (bad --task), 3 bad input, 4 output exists.",
    .check = check};

/* ---- the plain --ppl report */

static void print_ppl(const ds_ctx *ctx, const opts *o, const char *text, int seq_len, const ds_ppl_result *r,
                      double dt)
{
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:f, s:i}", "task", "ppl", "model", o->model,
                              "text", text, "seq_len", seq_len, "documents", r->documents, "tokens",
                              (json_int_t)r->tokens, "nll", r->nll, "ppl", r->ppl, "seconds", dt, "ranks", ctx->size);
        if (!ds_verify_enabled()) json_object_set_new(j, "verify", json_false()); /* --no-verify */
        char *s = json_dumps(j, DS_EVAL_JSON_FLAGS);
        ds_printf0(ctx, "%s\n", s);
        free(s);
        json_decref(j);
    } else {
        ds_printf0(ctx,
                   "task        ppl\nmodel       %s\ntext        %s\nseq_len     %d\ndocuments   %d\n"
                   "tokens      %lld\nnll         %.6f nats/token\nperplexity  %.4f\nseconds     %.2f\n",
                   o->model, text, seq_len, r->documents, (long long)r->tokens, r->nll, r->ppl, dt);
    }
}

static void print_pipe(const ds_ctx *ctx, const ds_pipe *p, const ds_llama *m);

static int run_ppl(ds_ctx *ctx, const opts *o)
{
    const char *text = last_arg(o, 'p');
    ds_text_docs docs;
    int rc = ds_ctx_agree(ctx, ds_text_load(text, &docs));
    ds_llama m;
    ds_tokenizer tok;
    ds_pipe pipe, *pp = &pipe;
    if (rc || (rc = ds_eval_load_stage(ctx, o->model, last_arg(o, 'd'), o->force, o->pipeline, pp, &m, &tok))) {
        ds_text_docs_free(&docs);
        return rc;
    }
    if (pipe.P > 1 && !ctx->quiet && !o->json) print_pipe(ctx, pp, &m); /* stdout is the JSON with --json */
    const int seq_len = o->eo.seq_len ? o->eo.seq_len : m.cfg.max_seq_len;
    if (seq_len > m.cfg.max_seq_len)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", seq_len, m.cfg.max_seq_len);
    if (!(rc = ds_ctx_agree(ctx, rc))) {
        ds_llama_threads_auto(ctx);
        ds_ppl_result r;
        double t0 = ds_now();
        rc = ds_ctx_agree(ctx, pp ? ds_llama_ppl_pipe(ctx, pp, &m, &tok, &docs, seq_len, &r)
                                  : ds_llama_ppl(ctx, &m, &tok, &docs, seq_len, &r));
        /* the sums are all-reduced: every rank sees the same values */
        if (!rc && !isfinite(r.nll))
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the NLL is not finite (non-finite logits)", text));
        else if (!rc && !isfinite(r.ppl))
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the perplexity overflows (NLL %g nats/token)", text, r.nll));
        if (!rc) print_ppl(ctx, o, text, seq_len, &r, ds_now() - t0);
    }
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    if (pp) ds_pipe_free(pp);
    ds_text_docs_free(&docs);
    return rc;
}

/* Collective: rank 0 prints the pipeline plan, one line per stage of group
 * 0 with the bytes of weights each holds. */
static void print_pipe(const ds_ctx *ctx, const ds_pipe *p, const ds_llama *m)
{
    double mine = (double)m->bytes, *all = ctx->rank == 0 ? ds_malloc(sizeof(double) * (size_t)ctx->size) : NULL;
    MPI_Gather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, ctx->comm);
    ds_printf0(ctx, "[%s] pipeline: %d group(s) of %d stages\n", ctx->job, p->groups, p->P);
    for (int s = 0; ctx->rank == 0 && s < p->P; s++)
        ds_printf0(ctx, "[%s] stage %d: layers %d-%d%s%s, %.1f MiB of weights\n", ctx->job, s, p->bounds[s],
                   p->bounds[s + 1] - 1, s == 0 ? " + embeddings" : "", s == p->P - 1 ? " + norm, head" : "",
                   all[s] / 1048576.0);
    free(all);
}

/* ---- the task runner */

typedef struct {
    ds_outfile json, csv, items;
    ds_outfile *answers, *judge, *lmeval; /* per model */
    json_t *rows;        /* rank 0: result rows */
} outputs;

/* Collective: the tasks' data, the pipeline plan and this rank's stage of
 * the base (the whole base when P is 1), the kl reference models' stages;
 * the options that depend on the model. */
static int load_everything(const ds_ctx *ctx, opts *o, ds_pipe *pipe, ds_llama *base, ds_tokenizer *tok,
                           int *have_tok)
{
    ds_eval_plan *p = &o->plan;
    int rc = 0;
    for (int i = 0; i < p->n_tasks && !rc; i++) rc = ds_eval_task_load(&p->tasks[i], &o->eo);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    if ((rc = ds_llama_load_path_pipe(ctx, o->model, o->pipeline, pipe, base, tok))) return rc;
    *have_tok = 1;
    if ((rc = ds_ctx_agree(ctx, ds_tokenizer_chat_template(tok, o->chat_opt, "--chat-template", &o->eo.chat_template))))
        return rc;
    if (tok->chat_template_other && strcmp(o->chat_opt, "auto") == 0 && !ctx->quiet && ctx->rank == 0)
        fprintf(stderr, "deltasoup eval: warning: %s has a chat template that is none of the built-ins (%s): "
                        "prompts use none; --chat-template NAME chooses one\n", o->model, ds_chat_names());
    if ((rc = ds_ctx_agree(ctx, ds_eval_opts_fit(&o->eo, base->cfg.max_seq_len)))) return rc;
    for (int i = 0; i < p->n_tasks && !rc; i++) {
        ds_eval_task *t = &p->tasks[i];
        if (t->kind != DS_TASK_KL) continue;
        t->ref_model = ds_calloc(1, sizeof *t->ref_model);
        /* through a pipeline the reference is split at the same layers (so
         * it must have as many); else it is whole, of any depth */
        rc = pipe->P > 1 ? ds_llama_load_path_stage(ctx, t->ref, pipe, t->ref_model)
                         : ds_llama_load_path_as(ctx, t->ref, t->ref_model, NULL, NULL, DS_LLAMA_LOAD_STORED);
        if (rc) {
            free(t->ref_model);
            t->ref_model = NULL;
            return rc;
        }
        if (t->ref_model->cfg.vocab_size != base->cfg.vocab_size || t->ref_model->cfg.max_seq_len < o->eo.seq_len)
            rc = ds_err(DS_EXIT_INPUT, "%s: vocabulary %d / max_seq_len %d do not fit %s (vocabulary %d, --seq-len %d)",
                        t->ref, t->ref_model->cfg.vocab_size, t->ref_model->cfg.max_seq_len, o->model,
                        base->cfg.vocab_size, o->eo.seq_len);
        rc = ds_ctx_agree(ctx, rc);
    }
    return rc;
}

/* The answers file of model m (mtbench-answers): DIR/<id>.jsonl, DIR
 * --answers-dir or the folder of the JSON (else CSV) output (malloc'd). */
static char *answers_path(const opts *o, int m)
{
    const char *json_file = o->json != json_stdout ? o->json : NULL;
    char *tmp = ds_strdup(o->answers_dir ? o->answers_dir : json_file ? json_file : o->csv);
    const char *dir = o->answers_dir ? tmp : dirname(tmp);
    char *path = ds_malloc(strlen(dir) + strlen(o->plan.models[m].id) + 8);
    sprintf(path, "%s/%s.jsonl", dir, o->plan.models[m].id);
    free(tmp);
    return path;
}

/* The judge prompts file of model m (mtbench-judge-prompts):
 * DIR/<id>.judge-prompts.jsonl, DIR --judge-dir or the answers' (malloc'd). */
static char *judge_path(const opts *o, int m)
{
    char *a = answers_path(o, m), *dir = o->judge_dir ? ds_strdup(o->judge_dir) : ds_strdup(dirname(a));
    char *path = ds_malloc(strlen(dir) + strlen(o->plan.models[m].id) + 24);
    sprintf(path, "%s/%s.judge-prompts.jsonl", dir, o->plan.models[m].id);
    free(dir);
    free(a);
    return path;
}

/* The lm-eval JSON of model m: OUT, or with several models OUT with
 * ".<id>" before its ".json" (else at its end) (malloc'd). */
static char *lmeval_path(const opts *o, int m)
{
    const char *out = o->lm_eval_json, *id = o->plan.models[m].id;
    if (o->plan.n_models == 1) return ds_strdup(out);
    const size_t n = strlen(out), stem = n > 5 && strcmp(out + n - 5, ".json") == 0 ? n - 5 : n;
    char *path = ds_malloc(n + strlen(id) + 2);
    sprintf(path, "%.*s.%s%s", (int)stem, out, id, out + stem);
    return path;
}

/* No output may be an input or another output (io/outfile.h), --overwrite or not. */
static int check_paths(const ds_ctx *ctx, const opts *o, char **answers, int n_answers)
{
    const int cap = 4 + n_answers + 1 + o->n_args + o->plan.n_models + 2 * o->plan.n_tasks + 1;
    const char **outs = ds_calloc((size_t)cap, sizeof *outs), **ins = outs + 3 + n_answers;
    int no = 0, ni = 0;
    outs[no++] = o->json != json_stdout ? o->json : NULL;
    outs[no++] = o->csv;
    outs[no++] = o->items;
    for (int m = 0; m < n_answers; m++) outs[no++] = answers[m];
    ins[ni++] = o->model;
    ins[ni++] = o->eo.judge_prompts;
    for (int i = 0; i < o->n_args; i++)
        if (o->args[i].kind == 'l' || o->args[i].kind == 'p') ins[ni++] = o->args[i].value;
    for (int m = 0; m < o->plan.n_models; m++) ins[ni++] = o->plan.models[m].path;
    for (int t = 0; t < o->plan.n_tasks; t++) {
        ins[ni++] = o->plan.tasks[t].data;
        ins[ni++] = o->plan.tasks[t].ref;
    }
    int rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, no, ins, ni));
    free(outs);
    return rc;
}

/* The per-model outputs: [answers, judge prompts, lm-eval JSON] of each model
 * that has them; *n receives the count, kinds[i] 'a', 'j' or 'l'. */
static char **model_outputs(const opts *o, int *n, char *kinds)
{
    const int nm = o->plan.n_models, mt = ds_eval_plan_count(&o->plan, DS_TASK_MTBENCH), judge = judge_task(&o->plan) != NULL;
    char **paths = ds_calloc(3 * (size_t)nm + 1, sizeof *paths);
    *n = 0;
    for (int m = 0; m < nm; m++) {
        if (mt) kinds[*n] = 'a', paths[(*n)++] = answers_path(o, m);
        if (judge) kinds[*n] = 'j', paths[(*n)++] = judge_path(o, m);
        if (o->lm_eval_json) kinds[*n] = 'l', paths[(*n)++] = lmeval_path(o, m);
    }
    return paths;
}

static int open_outputs(const ds_ctx *ctx, const opts *o, outputs *out)
{
    int n_answers;
    char *kinds = ds_malloc(3 * (size_t)o->plan.n_models + 1);
    char **answers = model_outputs(o, &n_answers, kinds);
    const char *json_file = o->json != json_stdout ? o->json : NULL;
    int rc = check_paths(ctx, o, answers, n_answers);
    if (!rc && json_file) rc = ds_outfile_open(ctx, &out->json, json_file, o->overwrite);
    if (!rc && o->csv) rc = ds_outfile_open(ctx, &out->csv, o->csv, o->overwrite);
    if (!rc && o->items) rc = ds_outfile_open(ctx, &out->items, o->items, o->overwrite);
    for (int i = 0, m = -1; i < n_answers && !rc; i++) {
        m += i == 0 || kinds[i] <= kinds[i - 1]; /* a model's outputs come in the order a, j, l */
        ds_outfile *f = kinds[i] == 'a' ? &out->answers[m] : kinds[i] == 'j' ? &out->judge[m] : &out->lmeval[m];
        rc = ds_outfile_open(ctx, f, answers[i], o->overwrite);
    }
    for (int m = 0; m < n_answers; m++) free(answers[m]);
    free(answers);
    free(kinds);
    return rc;
}

/* One (model, task): this rank's items, gathered and reduced on rank 0. */
static int run_task(const ds_ctx *ctx, outputs *out, const ds_eval_model *mr, ds_eval_task *t, ds_eval_env *env,
                    int mi)
{
    json_t **all;
    int rc = ds_eval_task_records(ctx, t, env, &all);
    if (!rc && ctx->rank == 0)
        rc = ds_eval_results_add(out->rows, mr, t, all, out->items.f, out->answers[mi].f, out->judge[mi].f);
    free(all);
    /* an item's failure was printed by the agreement above */
    return rc ? rc : ds_ctx_agree(ctx, rc);
}

/* Every model on every task; work receives a fresh copy of the base for
 * each (one model alone: work is the base, and its delta is added in place). */
static int evaluate_all(const ds_ctx *ctx, const opts *o, ds_llama *base, ds_llama *work, ds_eval_env *env,
                        outputs *out)
{
    const ds_eval_plan *p = &o->plan;
    int64_t total = 0, done = 0;
    for (int i = 0; i < p->n_tasks; i++) total += (int64_t)p->tasks[i].n * p->n_models;
    ds_progress prog;
    ds_progress_init(&prog, ctx, "items", total);
    int rc = 0;
    for (int mi = 0; mi < p->n_models && !rc; mi++) {
        const ds_eval_model *mr = &p->models[mi];
        /* a fresh copy of the base: no delta sees another's weights */
        if (work != base) ds_llama_copy(work, base);
        if (mr->path)
            rc = ds_delta_apply_to_model(ctx, mr->path, o->model, o->force, &base->cfg, work->n_tensors, work->tinfo,
                                         work->p);
        for (int ti = 0; ti < p->n_tasks && !rc; ti++) {
            rc = run_task(ctx, out, mr, &p->tasks[ti], env, mi);
            done += p->tasks[ti].n;
            ds_progress_step(&prog, done, "%s %s", mr->label, p->tasks[ti].spec);
        }
    }
    return rc;
}

/* Rank 0: the table or the JSON on stdout, the JSON and CSV files. */
static void report(const ds_ctx *ctx, const opts *o, outputs *out, double start, double seconds)
{
    for (int m = 0; m < o->plan.n_models && o->lm_eval_json; m++) {
        json_t *h = ds_eval_lmeval_doc(o->model, &o->plan.models[m], &o->plan, &o->eo, out->rows, start, seconds);
        char *hs = json_dumps(h, DS_EVAL_JSON_FLAGS | JSON_INDENT(2));
        fprintf(out->lmeval[m].f, "%s\n", hs);
        free(hs);
        json_decref(h);
    }
    json_t *doc = ds_eval_results_doc(o->model, &o->plan, &o->eo, out->rows, ctx->size, seconds);
    if (!ds_verify_enabled()) json_object_set_new(doc, "verify", json_false()); /* --no-verify */
    char *s = json_dumps(doc, DS_EVAL_JSON_FLAGS | JSON_INDENT(1));
    if (o->json == json_stdout) printf("%s\n", s);
    else ds_eval_print_table(ctx, out->rows);
    if (out->json.f) fprintf(out->json.f, "%s\n", s);
    if (out->csv.f) ds_eval_write_csv(out->csv.f, out->rows);
    free(s);
    json_decref(doc);
}

static int close_outputs(const ds_ctx *ctx, const opts *o, outputs *out, int rc)
{
    rc = ds_outfile_close(ctx, &out->json, rc);
    rc = ds_outfile_close(ctx, &out->csv, rc);
    rc = ds_outfile_close(ctx, &out->items, rc);
    for (int m = 0; m < o->plan.n_models; m++) {
        rc = ds_outfile_close(ctx, &out->answers[m], rc);
        rc = ds_outfile_close(ctx, &out->judge[m], rc);
        rc = ds_outfile_close(ctx, &out->lmeval[m], rc);
    }
    free(out->answers);
    free(out->judge);
    free(out->lmeval);
    json_decref(out->rows);
    return rc;
}

static int run_tasks(const ds_ctx *ctx, opts *o)
{
    ds_llama base = {0}, work = {0};
    ds_tokenizer tok = {0};
    ds_pipe pipe = {0};
    int have_tok = 0;
    int rc = load_everything(ctx, o, &pipe, &base, &tok, &have_tok);
    if (!rc && pipe.P > 1 && !ctx->quiet && o->json != json_stdout) print_pipe(ctx, &pipe, &base);
    const size_t nm = (size_t)o->plan.n_models + 1;
    outputs out = {.rows = json_array(), .answers = ds_calloc(nm, sizeof *out.answers),
                   .judge = ds_calloc(nm, sizeof *out.judge), .lmeval = ds_calloc(nm, sizeof *out.lmeval)};
    if (!rc) rc = open_outputs(ctx, o, &out);
    double t0 = ds_now(), start = (double)time(NULL);
    if (!rc) {
        /* One BLAS thread per rank: OpenBLAS may split a product differently
         * with more threads, and a result must not depend on how many ranks
         * share a node. Parallelism comes from the ranks (one per core). */
        ds_llama_set_threads(1);
        /* a working copy for each of several models (twice the weights);
         * one model alone is evaluated in the base's memory */
        if (o->plan.n_models > 1) rc = ds_ctx_agree(ctx, ds_llama_init_like(&work, &base));
    }
    ds_llama *wm = o->plan.n_models > 1 ? &work : &base;
    ds_eval_env env = {.m = wm, .tok = &tok, .refusal = ds_refusal_is_refusal, .o = &o->eo, .pipe = &pipe};
    if (!rc) rc = evaluate_all(ctx, o, &base, wm, &env, &out);
    if (!rc && ctx->rank == 0) report(ctx, o, &out, start, ds_now() - t0);
    rc = close_outputs(ctx, o, &out, rc);
    ds_eval_env_free(&env);
    if (work.w) ds_llama_free(&work);
    if (base.w) ds_llama_free(&base);
    if (have_tok) ds_tokenizer_free(&tok);
    if (pipe.bounds) ds_pipe_free(&pipe);
    return rc;
}

int ds_job_eval(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (!rc) ds_verify_init(ctx, o.no_verify);
    if (!rc) ds_mem_set_per_rank(o.mem_per_rank * 1024.0 * 1024.0 * 1024.0);
    if (!rc) rc = o.runner ? run_tasks(ctx, &o) : run_ppl(ctx, &o);
    ds_eval_plan_free(&o.plan);
    free(o.args);
    ds_opts_free(&cmd, &o);
    return ds_opts_exit(rc);
}
