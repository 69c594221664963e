/* deltasoup generate: text from a model with the KV-cached engine (rank 0
 * generates; other ranks only take part in loading), or through a pipeline
 * of stages (--pipeline: the first group's ranks each hold a stage, rank 0
 * prints). */
#include "config.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eval/generate.h"
#include "eval/plan.h"
#include "io/model_io.h"
#include "src/jobs.h"
#include "src/hash.h"
#include "src/membudget.h"
#include "src/opts.h"

typedef struct {
    const char *model, *delta, *prompt;
    int max_tokens, json, force;
    double temp;
    int64_t seed;
    int no_verify;
    int pipeline;        /* --pipeline P (0: auto) */
    double mem_per_rank; /* --mem-per-rank, GiB */
} opts;

static const ds_opt options[] = {
    DS_OPT_STRING(opts, model, "model", "M.h5", "checkpoint with a tokenizer"),
    DS_OPT_STRING(opts, delta, "delta", "D.bd.h5", "add a BitDelta delta made for M.h5 to the weights"),
    DS_OPT_FORCE(opts, force, "with --delta: a delta made for another base"),
    DS_OPT_STRING(opts, prompt, "prompt", "TEXT", "text to continue (empty by default)"),
    DS_OPT_INT(opts, max_tokens, "max-tokens", "N", 1, 1 << 24, "256", "new tokens at most"),
    DS_OPT_DOUBLE(opts, temp, "temperature", "T", 0, 100, "1.0",
                  "0 = greedy (argmax), else sample softmax(logits / T)"),
    DS_OPT_I64(opts, seed, "seed", "S", 0, INT64_MAX, "42", "sampling seed"),
    DS_OPT_JSON(opts, json, "print {prompt_tokens, tokens, text, tokens_per_s} instead of the text"),
    DS_OPT_PIPELINE(opts, pipeline, ""),
    DS_OPT_MEM_PER_RANK(opts, mem_per_rank),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static int check(void *p)
{
    const opts *o = p;
    return o->model ? 0 : ds_err(DS_EXIT_USAGE, "--model is required");
}

static const ds_cmd cmd = {
    .usage = "deltasoup generate --model M.h5 [--delta D.bd.h5 [--force]] [--prompt TEXT] [options]",
    .about = "Continue a prompt (after BOS) until EOS, BOS, an end-of-turn token (<|eot_id|>, <|im_end|>),\n"
             "--max-tokens or the model's max_seq_len.",
    .opts = options,
    .epilog = "With --quiet, no timing line on stderr.",
    .check = check};

/* Text mode, llama2.c tokenizer: each new token's text as it is made (arg: the tokenizer). */
static void print_piece(void *arg, int prev, int next)
{
    int len;
    const char *piece = ds_tokenizer_decode(arg, prev, next, &len);
    if (piece) fwrite(piece, 1, (size_t)len, stdout);
    fflush(stdout);
}

/* Text mode, Hugging Face tokenizer: the decoded sequence as it grows (arg: a ds_text_stream). */
static void print_stream(void *arg, int prev, int next)
{
    (void)prev;
    ds_text_stream_push(arg, next, stdout);
}

static void print_json(ds_tokenizer *tok, const int *ids, int np, const int *out, int n, double dt)
{
    json_t *jp = json_array(), *jt = json_array();
    for (int i = 0; i < np; i++) json_array_append_new(jp, json_integer(ids[i]));
    for (int i = 0; i < n; i++) json_array_append_new(jt, json_integer(out[i]));
    int *all = ds_malloc((size_t)(np + n) * sizeof *all);
    memcpy(all, ids, (size_t)np * sizeof *all);
    memcpy(all + np, out, (size_t)n * sizeof *all);
    char *text = ds_tokenizer_decode_ids(tok, all, np + n, NULL);
    json_t *o = json_pack("{s:o, s:o, s:s, s:f}", "prompt_tokens", jp, "tokens", jt, "text", text ? text : "",
                          "tokens_per_s", dt > 0 ? (np + n) / dt : 0.0);
    if (!ds_verify_enabled()) json_object_set_new(o, "verify", json_false()); /* --no-verify */
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    free(text);
    free(all);
}

/* The prompt's ids with the post-processor's specials (BOS); a tokenizer
 * that adds none and an empty prompt: BOS alone. -1 with ds_err set. */
static int encode_prompt(ds_tokenizer *tok, const char *prompt, int *ids)
{
    int np = ds_tokenizer_encode(tok, prompt, 1, 0, ids);
    if (np < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", ds_errmsg());
        ds_err(DS_EXIT_INPUT, "--prompt: %s", msg);
        return -1;
    }
    if (np == 0 && tok->bos_id >= 0) ids[np++] = tok->bos_id;
    if (np == 0) ds_err(DS_EXIT_USAGE, "--prompt: no tokens (and the tokenizer has no BOS to start from)");
    return np ? np : -1;
}

/* Rank 0 (and, through a pipeline, the other stages of its group): encode,
 * generate; rank 0 prints. */
static int run(const ds_ctx *ctx, const opts *o, const ds_llama *m, ds_tokenizer *tok, const ds_pipe *p)
{
    const int out0 = ctx->rank == 0;
    int *ids = ds_malloc((strlen(o->prompt) + 3) * sizeof *ids);
    const int np = encode_prompt(tok, o->prompt, ids);
    int total = np + o->max_tokens, rc = 0;
    if (total > m->cfg.max_seq_len) total = m->cfg.max_seq_len;
    if (np < 0 || np >= total) {
        rc = np < 0 ? ds_errcode()
                    : ds_err(DS_EXIT_USAGE, "--prompt: %d tokens leave no room in the model's max_seq_len %d", np,
                             m->cfg.max_seq_len);
        free(ids);
        return rc;
    }
    ds_text_stream stream = {0};
    if (out0 && !o->json && tok->hf) ds_text_stream_init(&stream, tok, ids, np, stdout);
    else if (out0 && !o->json) {
        char *text = ds_tokenizer_decode_ids(tok, ids, np, NULL);
        if (text) fputs(text, stdout);
        free(text);
    }
    int stop[DS_TOK_MAX_STOP], n_stop = ds_tokenizer_stop_ids(tok, stop);
    int *out = ds_malloc((size_t)total * sizeof *out);
    double t0 = ds_now();
    ds_generate_fn fn = !out0 || o->json ? NULL : tok->hf ? print_stream : print_piece;
    void *arg = tok->hf ? (void *)&stream : tok;
    int n = p->P > 1 ? ds_generate_pipe(p, m, ids, np, total, (float)o->temp, (uint64_t)o->seed, stop, n_stop, fn,
                                        arg, out)
                     : ds_generate(m, ids, np, total, (float)o->temp, (uint64_t)o->seed, stop, n_stop, fn, arg, out);
    double dt = ds_now() - t0;
    if (n < 0) /* what came before was streamed already; no JSON */
        rc = ds_err(DS_EXIT_INPUT, "%s: the model's logits are not finite at new token %d", o->model, -n);
    if (out0 && !o->json && tok->hf) ds_text_stream_end(&stream, stdout);
    if (out0 && o->json && !rc) print_json(tok, ids, np, out, n, dt);
    else if (out0 && !o->json) printf("\n");
    if (n < 0) n = -1 - n;
    if (out0 && !ctx->quiet)
        fprintf(stderr, "[generate] %d prompt + %d new tokens in %.3f s (%.1f tokens/s)\n", np, n, dt,
                dt > 0 ? (np + n) / dt : 0.0);
    free(out);
    free(ids);
    return rc;
}

int ds_job_generate(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.prompt = ""};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    ds_mem_set_per_rank(o.mem_per_rank * 1024.0 * 1024.0 * 1024.0);
    ds_llama m;
    ds_tokenizer tok;
    ds_pipe pipe;
    if ((rc = ds_eval_load_stage(ctx, o.model, o.delta, o.force, o.pipeline, &pipe, &m, &tok))) return rc;
    ds_llama_threads_auto(ctx); /* collective */
    if (pipe.P > 1 && pipe.group == 0 && ctx->rank == 0 && !ctx->quiet)
        fprintf(stderr, "[generate] pipeline of %d stages (ranks 0-%d); layers of stage 0: %d-%d\n", pipe.P,
                pipe.P - 1, pipe.l0, pipe.l1 - 1);
    if (pipe.group == 0 && (pipe.P > 1 || ctx->rank == 0)) rc = run(ctx, &o, &m, &tok, &pipe);
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    ds_pipe_free(&pipe);
    return ds_ctx_agree(ctx, rc);
}
