/* deltasoup eval --task ...: every task over the base model and each delta
 * (docs/eval.md). The base is loaded once; for each delta every rank copies
 * the base weights and adds the delta; each task's items are split into
 * contiguous blocks across ranks, the per-item records are gathered on rank 0
 * in item order and reduced there, so a delta's numbers depend neither on the
 * number of ranks nor on the other deltas of the job. */
#include "config.h"
#include "jobs/eval_tasks.h"
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "eval/tasks.h"
#include "io/delta_apply.h"
#include "io/h5_delta.h"
#include "src/bitdelta.h"
#include "src/hash.h"
#include "io/model_io.h"
#include "src/shard.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

void ds_eval_tasks_usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup eval --model B.h5 [--delta D.bd.h5]... [--delta-list FILE] --task KIND:FILE...\n"
               "                      [--limit N] [--max-tokens N] [--seq-len N] [--json [OUT]] [--csv OUT]\n"
               "                      [--items OUT] [--answers-dir DIR] [--overwrite] [--force] [--quiet]\n"
               "Evaluate the base model and/or base + each delta on every task (docs/eval.md).\n"
               "  --model B.h5          base checkpoint with a tokenizer\n"
               "  --delta D.bd.h5       a delta to evaluate (repeatable); with none, the base itself (\"base\")\n"
               "  --delta-list FILE     more deltas, one path per line (# comments; a line \"base\" = the base)\n"
               "  --task KIND:FILE      repeatable; KIND:\n"
               "      truthfulqa-mc:mc_task.json   MC1 and MC2 (prompt \"Q: {question}\\nA:\", answer \" {choice}\")\n"
               "      refusal:FILE.csv             refusal rate on HarmBench or AdvBench behaviours (by header)\n"
               "      xstest:xstest_prompts.csv    refusal rate on the safe and on the unsafe prompts\n"
               "      ppl:TEXT                     NLL per token and perplexity (also: --ppl TEXT)\n"
               "      kl:REF.h5:TEXT               KL(p_ref || p) per token against a reference checkpoint\n"
               "      mtbench-answers:question.jsonl  answers in FastChat's answer JSONL format\n"
               "  --limit N             first N items of each task (xstest: of each label)\n"
               "  --max-tokens N        new tokens per generated answer (default 32)\n"
               "  --seq-len N           ppl/kl: tokens per document at most (default: the model's max_seq_len)\n"
               "  --json [OUT]          the results as JSON to OUT (without OUT: to stdout instead of the table)\n"
               "  --csv OUT             the results as CSV\n"
               "  --items OUT           every item's record as JSON lines (audit, references)\n"
               "  --answers-dir DIR     mtbench-answers: DIR/<model_id>.jsonl (default: the directory of --json\n"
               "                        OUT or --csv OUT)\n"
               "  --overwrite           replace existing outputs;  --force: apply deltas made for another base\n"
               "Exit: 0 ok, 2 usage (bad --task), 3 bad input, 4 output exists.\n");
}

int ds_eval_tasks_wanted(int argc, char **argv)
{
    static const char *const own[] = {"--task", "--delta-list", "--csv", "--items", "--answers-dir",
                                      "--limit", "--max-tokens", NULL};
    int deltas = 0;
    for (int i = 1; i < argc; i++) {
        for (int k = 0; own[k]; k++) {
            const size_t n = strlen(own[k]);
            if (strncmp(argv[i], own[k], n) == 0 && (argv[i][n] == 0 || argv[i][n] == '=')) return 1;
        }
        if (strncmp(argv[i], "--json=", 7) == 0) return 1;
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc && argv[i + 1][0] != '-') return 1;
        if (strcmp(argv[i], "--delta") == 0 || strncmp(argv[i], "--delta=", 8) == 0) deltas++;
    }
    return deltas > 1;
}

/* A model evaluated: "base" or a delta file. */
typedef struct {
    char *path;  /* NULL: the base */
    char *label; /* "base" or the path as given */
    char *id;    /* model_id of MT-Bench answers: "base" or the file name without .bd.h5 / .h5 */
} model_ref;

typedef struct {
    const char *model, *json, *csv, *items, *answers_dir;
    int json_stdout, overwrite, force;
    int n_models;
    model_ref *models;
    int n_tasks;
    ds_eval_task *tasks;
    ds_eval_opts o;
} job;

static void add_model(job *j, const char *path)
{
    j->models = ds_realloc(j->models, (size_t)(j->n_models + 1) * sizeof *j->models);
    model_ref *r = &j->models[j->n_models++];
    r->path = path ? ds_strdup(path) : NULL;
    r->label = ds_strdup(path ? path : "base");
    char *tmp = ds_strdup(path ? path : "base"), *b = basename(tmp);
    const size_t n = strlen(b);
    if (n > 6 && strcmp(b + n - 6, ".bd.h5") == 0) b[n - 6] = 0;
    else if (n > 3 && strcmp(b + n - 3, ".h5") == 0) b[n - 3] = 0;
    r->id = ds_strdup(b);
    free(tmp);
}

static int read_delta_list(job *j, const char *path)
{
    char *text;
    size_t len;
    int lineno = 0, rc = ds_read_file(path, &text, &len); /* the message names the file */
    if (rc) return rc;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t') line++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n || line[0] == '#') continue;
        if (strcmp(line, "base") == 0) {
            add_model(j, NULL);
        } else if (!ds_file_exists(line)) {
            rc = ds_err(DS_EXIT_INPUT, "--delta-list %s: line %d: no such delta file '%s'", path, lineno, line);
            break;
        } else {
            add_model(j, line);
        }
    }
    free(text);
    return rc;
}

static void add_task(job *j, ds_eval_task *t)
{
    j->tasks = ds_realloc(j->tasks, (size_t)(j->n_tasks + 1) * sizeof *j->tasks);
    j->tasks[j->n_tasks++] = *t;
}

static void job_free(job *j)
{
    for (int i = 0; i < j->n_models; i++) {
        free(j->models[i].path);
        free(j->models[i].label);
        free(j->models[i].id);
    }
    for (int i = 0; i < j->n_tasks; i++) ds_eval_task_free(&j->tasks[i]);
    free(j->models);
    free(j->tasks);
}

static int parse(ds_ctx *ctx, job *j, int argc, char **argv, int *help)
{
    static const struct option opts[] = {
        {"model", 1, 0, 'm'},   {"delta", 1, 0, 'd'},      {"delta-list", 1, 0, 'L'},  {"task", 1, 0, 't'},
        {"ppl", 1, 0, 'p'},     {"limit", 1, 0, 'l'},      {"max-tokens", 1, 0, 'n'}, {"seq-len", 1, 0, 'T'},
        {"json", 2, 0, 'j'},    {"csv", 1, 0, 'c'},        {"items", 1, 0, 'i'},      {"answers-dir", 1, 0, 'a'},
        {"overwrite", 0, 0, 'o'}, {"force", 0, 0, 'f'},    {"quiet", 0, 0, 'q'},      {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int rc = 0, c, explicit_deltas = 0;
    long v;
    j->o.max_tokens = 32;
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        ds_eval_task t;
        switch (c) {
        case 'm': j->model = optarg; break;
        case 'd':
            if (!ds_file_exists(optarg)) rc = ds_err(DS_EXIT_INPUT, "--delta %s: no such file", optarg);
            else add_model(j, optarg);
            explicit_deltas = 1;
            break;
        case 'L':
            rc = read_delta_list(j, optarg);
            explicit_deltas = 1;
            break;
        case 't':
            if (!(rc = ds_eval_task_parse(optarg, &t))) add_task(j, &t);
            break;
        case 'p': {
            char *spec = ds_malloc(strlen(optarg) + 5);
            sprintf(spec, "ppl:%s", optarg);
            if (!(rc = ds_eval_task_parse(spec, &t))) add_task(j, &t);
            free(spec);
            break;
        }
        case 'l': rc = ds_parse_int("--limit", optarg, 1, 1 << 30, &v); j->o.limit = (int)v; break;
        case 'n': rc = ds_parse_int("--max-tokens", optarg, 1, 1 << 24, &v); j->o.max_tokens = (int)v; break;
        case 'T': rc = ds_parse_int("--seq-len", optarg, 2, 1 << 24, &v); j->o.seq_len = (int)v; break;
        case 'j':
            /* "--json OUT" as well as "--json=OUT"; a bare --json prints to stdout */
            if (!optarg && optind < argc && argv[optind][0] != '-') optarg = argv[optind++];
            if (optarg) j->json = optarg;
            else j->json_stdout = 1;
            break;
        case 'c': j->csv = optarg; break;
        case 'i': j->items = optarg; break;
        case 'a': j->answers_dir = optarg; break;
        case 'o': j->overwrite = 1; break;
        case 'f': j->force = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'h': *help = 1; return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option (see deltasoup eval --help)");
        }
    }
    if (!rc && optind < argc) rc = ds_err(DS_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!rc && !j->model) rc = ds_err(DS_EXIT_USAGE, "--model is required");
    if (!rc && j->n_tasks == 0) rc = ds_err(DS_EXIT_USAGE, "no task: give --task KIND:FILE (see --help)");
    if (!rc && explicit_deltas && j->n_models == 0) rc = ds_err(DS_EXIT_USAGE, "--delta-list: no delta in the list");
    if (!rc && j->n_models == 0) add_model(j, NULL);
    int n_mt = 0;
    for (int i = 0; i < j->n_tasks; i++) n_mt += j->tasks[i].kind == DS_TASK_MTBENCH;
    if (!rc && n_mt > 1) rc = ds_err(DS_EXIT_USAGE, "mtbench-answers: give it once (one answer file per model)");
    if (!rc && n_mt) {
        if (!j->answers_dir && !j->json && !j->csv)
            rc = ds_err(DS_EXIT_USAGE, "mtbench-answers needs --answers-dir DIR (or --json OUT / --csv OUT)");
        for (int a = 0; a < j->n_models && !rc; a++)
            for (int b = 0; b < a && !rc; b++)
                if (strcmp(j->models[a].id, j->models[b].id) == 0)
                    rc = ds_err(DS_EXIT_USAGE, "mtbench-answers: models %s and %s would both write %s.jsonl",
                                j->models[b].label, j->models[a].label, j->models[a].id);
    }
    return ds_ctx_agree(ctx, rc);
}

/* ---- outputs: written on rank 0 to NAME.tmp, renamed when all went well */

typedef struct {
    char *path;
    FILE *f;
} out_file;

static int out_open(const ds_ctx *ctx, out_file *o, const char *path, int overwrite)
{
    o->path = ds_strdup(path);
    o->f = NULL;
    int rc = ds_out_begin(ctx, path, overwrite);
    if (rc) return rc;
    if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(path, tmp, sizeof tmp);
        if (!(o->f = fopen(tmp, "w"))) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    }
    return ds_ctx_agree(ctx, rc);
}

/* Close, and rename into place (rc 0, collective) or remove (rc != 0). */
static int out_close(const ds_ctx *ctx, out_file *o, int rc)
{
    if (!o->path) return rc;
    if (o->f && fclose(o->f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: write failed", o->path);
    o->f = NULL;
    if (!rc) {
        rc = ds_out_finish(ctx, o->path, ds_ctx_agree(ctx, rc));
    } else if (ctx->rank == 0) {
        char tmp[4096];
        ds_out_tmpname(o->path, tmp, sizeof tmp);
        remove(tmp);
    }
    free(o->path);
    o->path = NULL;
    return rc;
}

/* ---- gathering records */

/* Rank 0 receives the records of every item in order: each rank sends its
 * contiguous block as JSON lines (17 significant digits: doubles survive
 * exactly). all[k] are new references on rank 0. */
static void gather(const ds_ctx *ctx, json_t **mine, int64_t lo, int64_t hi, int n, json_t **all)
{
    size_t len = 0;
    char **s = ds_malloc(((size_t)(hi - lo) + 1) * sizeof *s);
    for (int64_t k = lo; k < hi; k++) {
        s[k - lo] = json_dumps(mine[k - lo], JSON_FLAGS);
        len += strlen(s[k - lo]) + 1;
    }
    if (len > (size_t)1 << 30) ds_die("eval: records of one rank exceed 1 GiB");
    char *buf = ds_malloc(len + 1), *p = buf;
    for (int64_t k = lo; k < hi; k++) {
        const size_t n1 = strlen(s[k - lo]);
        memcpy(p, s[k - lo], n1);
        p[n1] = '\n';
        p += n1 + 1;
        free(s[k - lo]);
    }
    free(s);
    int mylen = (int)len, *lens = NULL, *displs = NULL;
    char *recv = NULL;
    if (ctx->rank == 0) {
        lens = ds_malloc((size_t)ctx->size * sizeof *lens);
        displs = ds_malloc((size_t)ctx->size * sizeof *displs);
    }
    MPI_Gather(&mylen, 1, MPI_INT, lens, 1, MPI_INT, 0, ctx->comm);
    if (ctx->rank == 0) {
        int64_t tot = 0;
        for (int r = 0; r < ctx->size; r++) {
            if (tot + lens[r] > INT32_MAX) ds_die("eval: gathered records exceed 2 GiB");
            displs[r] = (int)tot;
            tot += lens[r];
        }
        recv = ds_malloc((size_t)tot + 1);
        recv[tot] = 0;
    }
    MPI_Gatherv(buf, mylen, MPI_CHAR, recv, lens, displs, MPI_CHAR, 0, ctx->comm);
    if (ctx->rank == 0) {
        char *line = recv;
        for (int k = 0; k < n; k++) {
            char *nl = strchr(line, '\n');
            json_error_t err;
            all[k] = nl ? json_loadb(line, (size_t)(nl - line), 0, &err) : NULL;
            if (!all[k]) ds_die("eval: record %d did not arrive intact", k);
            line = nl + 1;
        }
    }
    free(recv);
    free(lens);
    free(displs);
    free(buf);
}

/* ---- one (model, task): items of this rank, gather, reduce on rank 0 */

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* FastChat's answer record; answer_id is derived from the content, so runs
 * with any number of ranks write the same ids. */
static void write_answer(FILE *f, const char *model_id, const json_t *rec)
{
    json_t *turns = json_object_get(rec, "turns");
    char *t = json_dumps(turns, JSON_FLAGS);
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(json_object_get(rec, "question_id")));
    ds_sha256 *h = ds_sha256_new();
    ds_sha256_update(h, model_id, strlen(model_id) + 1);
    ds_sha256_update(h, buf, strlen(buf) + 1);
    ds_sha256_update(h, t, strlen(t));
    ds_digest d;
    ds_sha256_final(h, &d);
    char hex[65];
    ds_digest_hex(&d, hex);
    hex[22] = 0; /* as long as FastChat's shortuuid ids */
    json_t *o = json_pack("{s:O, s:s, s:s, s:[{s:i, s:O}], s:f}", "question_id",
                          json_object_get(rec, "question_id"), "answer_id", hex, "model_id", model_id, "choices",
                          "index", 0, "turns", turns, "tstamp", (double)time(NULL));
    char *s = json_dumps(o, JSON_COMPACT);
    fprintf(f, "%s\n", s);
    free(s);
    free(t);
    json_decref(o);
}

typedef struct {
    job *j;
    json_t *rows;  /* rank 0: result rows */
    out_file items;
    out_file *answers; /* per model */
} run_state;

static int reduce_and_write(run_state *st, int mi, const ds_eval_task *t, json_t **all);

static int run_task(const ds_ctx *ctx, run_state *st, int mi, ds_eval_task *t, ds_eval_env *env)
{
    int64_t lo, hi;
    ds_shard_range(t->n, ctx->rank, ctx->size, &lo, &hi);
    json_t **mine = ds_calloc((size_t)(hi - lo) + 1, sizeof *mine);
    int rc = 0;
    for (int64_t k = lo; k < hi && !rc; k++) rc = ds_eval_task_item(t, env, (int)k, &mine[k - lo]);
    rc = ds_ctx_agree(ctx, rc);
    json_t **all = ctx->rank == 0 ? ds_calloc((size_t)t->n, sizeof *all) : NULL;
    if (!rc) gather(ctx, mine, lo, hi, t->n, all);
    for (int64_t k = lo; k < hi; k++) json_decref(mine[k - lo]);
    free(mine);
    if (!rc && ctx->rank == 0) rc = reduce_and_write(st, mi, t, all);
    free(all);
    /* an item's failure was printed by the agreement above */
    return rc ? rc : ds_ctx_agree(ctx, rc);
}

/* Rank 0: metric rows, item records, answers of one (model, task). */
static int reduce_and_write(run_state *st, int mi, const ds_eval_task *t, json_t **all)
{
    const model_ref *mr = &st->j->models[mi];
    int rc = 0;
    ds_eval_metric met[DS_EVAL_MAX_METRICS];
    int nm = ds_eval_task_reduce(t, all, met);
    if (nm < 0) rc = ds_errcode() ? ds_errcode() : DS_EXIT_FAIL;
    for (int i = 0; i < nm; i++) {
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:s}", "delta", mr->label, "task",
                                ds_task_kind_name(t->kind), "data", t->data, "metric", met[i].metric, "value",
                                num_or_null(met[i].value), "n", (json_int_t)met[i].n, "se", num_or_null(met[i].se),
                                "better", ds_better_name(met[i].better));
        if (t->ref) json_object_set_new(row, "ref", json_string(t->ref));
        json_array_append_new(st->rows, row);
    }
    for (int k = 0; k < t->n; k++) {
        if (st->items.f) {
            json_t *o = json_pack("{s:s, s:s, s:i, s:i}", "delta", mr->label, "task", t->spec, "item", k, "index",
                                  t->index[k]);
            json_object_update(o, all[k]);
            char *s = json_dumps(o, JSON_FLAGS);
            fprintf(st->items.f, "%s\n", s);
            free(s);
            json_decref(o);
        }
        if (t->kind == DS_TASK_MTBENCH) write_answer(st->answers[mi].f, mr->id, all[k]);
        json_decref(all[k]);
    }
    return rc;
}

/* ---- printing */

static void print_table(const ds_ctx *ctx, json_t *rows)
{
    ds_printf0(ctx, "%-24s %-16s %-24s %-20s %14s %12s %7s\n", "delta", "task", "data", "metric", "value", "se", "n");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        char *d = ds_strdup(json_string_value(json_object_get(r, "data")));
        json_t *v = json_object_get(r, "value"), *se = json_object_get(r, "se");
        char vs[32] = "-", ses[32] = "-";
        if (json_is_number(v)) snprintf(vs, sizeof vs, "%.6f", json_number_value(v));
        if (json_is_number(se)) snprintf(ses, sizeof ses, "%.6f", json_number_value(se));
        ds_printf0(ctx, "%-24s %-16s %-24s %-20s %14s %12s %7lld\n", json_string_value(json_object_get(r, "delta")),
                   json_string_value(json_object_get(r, "task")), basename(d),
                   json_string_value(json_object_get(r, "metric")), vs, ses,
                   (long long)json_integer_value(json_object_get(r, "n")));
        free(d);
    }
}

/* RFC 4180: quote a field holding a comma, quote or line break. */
static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputs(last ? "\n" : ",", f);
}

static void write_csv(FILE *f, json_t *rows)
{
    fputs("delta,task,data,metric,value,n,se,better\n", f);
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        char v[64] = "", se[64] = "", n[32];
        json_t *jv = json_object_get(r, "value"), *js = json_object_get(r, "se");
        if (json_is_number(jv)) snprintf(v, sizeof v, "%.17g", json_number_value(jv));
        if (json_is_number(js)) snprintf(se, sizeof se, "%.17g", json_number_value(js));
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(r, "n")));
        csv_field(f, json_string_value(json_object_get(r, "delta")), 0);
        csv_field(f, json_string_value(json_object_get(r, "task")), 0);
        csv_field(f, json_string_value(json_object_get(r, "data")), 0);
        csv_field(f, json_string_value(json_object_get(r, "metric")), 0);
        csv_field(f, v, 0);
        csv_field(f, n, 0);
        csv_field(f, se, 0);
        csv_field(f, json_string_value(json_object_get(r, "better")), 1);
    }
}

/* ---- the job */

static int load_everything(const ds_ctx *ctx, job *j, ds_llama *base, ds_tokenizer *tok, int *have_tok)
{
    int rc = 0;
    for (int i = 0; i < j->n_tasks && !rc; i++) rc = ds_eval_task_load(&j->tasks[i], &j->o);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    if ((rc = ds_llama_load_path(ctx, j->model, base, tok, NULL))) return rc;
    *have_tok = 1;
    const int max_t = base->cfg.max_seq_len;
    if (j->o.seq_len == 0) j->o.seq_len = max_t;
    if (j->o.seq_len > max_t)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", j->o.seq_len, max_t);
    if (!rc && j->o.max_tokens >= max_t)
        rc = ds_err(DS_EXIT_USAGE, "--max-tokens %d leaves no room for a prompt in max_seq_len %d", j->o.max_tokens,
                    max_t);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    for (int i = 0; i < j->n_tasks && !rc; i++) {
        ds_eval_task *t = &j->tasks[i];
        if (t->kind != DS_TASK_KL) continue;
        t->ref_model = ds_calloc(1, sizeof *t->ref_model);
        if ((rc = ds_llama_load_path(ctx, t->ref, t->ref_model, NULL, NULL))) {
            free(t->ref_model);
            t->ref_model = NULL;
            return rc;
        }
        if (t->ref_model->cfg.vocab_size != base->cfg.vocab_size || t->ref_model->cfg.max_seq_len < j->o.seq_len)
            rc = ds_err(DS_EXIT_INPUT, "%s: vocabulary %d / max_seq_len %d do not fit %s (vocabulary %d, --seq-len %d)",
                        t->ref, t->ref_model->cfg.vocab_size, t->ref_model->cfg.max_seq_len, j->model,
                        base->cfg.vocab_size, j->o.seq_len);
        rc = ds_ctx_agree(ctx, rc);
    }
    return rc;
}

static int open_outputs(const ds_ctx *ctx, job *j, run_state *st, out_file *json, out_file *csv)
{
    int rc = 0;
    if (j->json) rc = out_open(ctx, json, j->json, j->overwrite);
    if (!rc && j->csv) rc = out_open(ctx, csv, j->csv, j->overwrite);
    if (!rc && j->items) rc = out_open(ctx, &st->items, j->items, j->overwrite);
    int mt = 0;
    for (int i = 0; i < j->n_tasks; i++) mt |= j->tasks[i].kind == DS_TASK_MTBENCH;
    if (rc || !mt) return rc;
    char *dir;
    if (j->answers_dir) {
        dir = ds_strdup(j->answers_dir);
    } else {
        char *tmp = ds_strdup(j->json ? j->json : j->csv);
        dir = ds_strdup(dirname(tmp));
        free(tmp);
    }
    for (int m = 0; m < j->n_models && !rc; m++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.jsonl", dir, j->models[m].id);
        rc = out_open(ctx, &st->answers[m], path, j->overwrite);
    }
    free(dir);
    return rc;
}

int ds_eval_tasks_main(ds_ctx *ctx, int argc, char **argv)
{
    job j = {0};
    int help = 0, rc = parse(ctx, &j, argc, argv, &help);
    if (help) {
        ds_eval_tasks_usage(ctx);
        job_free(&j);
        return 0;
    }
    ds_llama base = {0}, work = {0};
    ds_tokenizer tok = {0};
    int have_tok = 0;
    if (!rc) rc = load_everything(ctx, &j, &base, &tok, &have_tok);
    run_state st = {.j = &j, .rows = json_array()};
    st.answers = ds_calloc((size_t)j.n_models + 1, sizeof *st.answers);
    out_file json = {0}, csv = {0};
    if (!rc) rc = open_outputs(ctx, &j, &st, &json, &csv);
    double t0 = ds_now();
    if (!rc) {
        /* One BLAS thread per rank: OpenBLAS may split a product differently
         * with more threads, and a result must not depend on how many ranks
         * share a node. Parallelism comes from the ranks (one per core). */
        ds_llama_set_threads(1);
        rc = ds_ctx_agree(ctx, ds_llama_init(&work, &base.cfg));
    }
    ds_eval_env env = {.m = &work, .tok = &tok, .refusal = ds_refusal_is_refusal, .o = &j.o};
    int64_t total = 0, done = 0;
    for (int i = 0; i < j.n_tasks; i++) total += (int64_t)j.tasks[i].n * j.n_models;
    ds_progress prog;
    ds_progress_init(&prog, ctx, "items", total);
    for (int mi = 0; mi < j.n_models && !rc; mi++) {
        const model_ref *mr = &j.models[mi];
        /* a fresh copy of the base: no delta sees another's weights */
        memcpy(work.w[0], base.w[0], (size_t)base.numel * sizeof(float));
        if (mr->path)
            rc = ds_delta_apply_to_model(ctx, mr->path, j.model, j.force, &base.cfg, work.n_tensors, work.tinfo,
                                            work.w);
        for (int ti = 0; ti < j.n_tasks && !rc; ti++) {
            rc = run_task(ctx, &st, mi, &j.tasks[ti], &env);
            done += j.tasks[ti].n;
            ds_progress_step(&prog, done, "%s %s", mr->label, j.tasks[ti].spec);
        }
    }
    const double seconds = ds_now() - t0;
    if (!rc && ctx->rank == 0) {
        json_t *tasks = json_array(), *models = json_array();
        for (int i = 0; i < j.n_tasks; i++)
            json_array_append_new(tasks, json_pack("{s:s, s:s, s:s, s:i}", "spec", j.tasks[i].spec, "task",
                                                   ds_task_kind_name(j.tasks[i].kind), "data", j.tasks[i].data, "n",
                                                   j.tasks[i].n));
        for (int i = 0; i < j.n_models; i++) json_array_append_new(models, json_string(j.models[i].label));
        json_t *doc = json_pack("{s:s, s:i, s:s, s:o, s:o, s:{s:i, s:i, s:i}, s:O, s:i, s:f}", "format",
                                "deltasoup.eval", "format_version", 1, "model", j.model, "deltas", models, "tasks",
                                tasks, "options", "limit", j.o.limit, "max_tokens", j.o.max_tokens, "seq_len",
                                j.o.seq_len, "results", st.rows, "ranks", ctx->size, "seconds", seconds);
        char *s = json_dumps(doc, JSON_FLAGS | JSON_INDENT(1));
        if (j.json_stdout) printf("%s\n", s);
        else print_table(ctx, st.rows);
        if (json.f) fprintf(json.f, "%s\n", s);
        if (csv.f) write_csv(csv.f, st.rows);
        free(s);
        json_decref(doc);
    }
    rc = out_close(ctx, &json, rc);
    rc = out_close(ctx, &csv, rc);
    rc = out_close(ctx, &st.items, rc);
    for (int m = 0; m < j.n_models; m++) rc = out_close(ctx, &st.answers[m], rc);
    free(st.answers);
    json_decref(st.rows);
    ds_eval_env_free(&env);
    if (work.w) ds_llama_free(&work);
    if (base.w) ds_llama_free(&base);
    if (have_tok) ds_tokenizer_free(&tok);
    job_free(&j);
    return rc;
}
