/* deltasoup finetune: full-parameter AdamW fine-tuning on a text,
 * data-parallel (each rank a share of every batch; gradients all-reduced so
 * every rank keeps identical weights).
 *
 * options -> text (io/tokens.h, read before the model so that bad data
 * costs no model load) -> model (ds_llama_load_path) -> token stream ->
 * AdamW steps on random windows (ds_tokens_batch) -> ds_llama_save. */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/model_io.h"
#include "io/outfile.h"
#include "io/tokens.h"
#include "src/jobs.h"
#include "src/membudget.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/shard.h"

typedef struct {
    const char *base, *data, *out;
    int steps, batch, T;
    int64_t seed;
    double lr, wd;
    int overwrite;
    int no_verify;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->base || !o->data || !o->out) return ds_err(DS_EXIT_USAGE, "--base, --data and -o are required");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint"),
    DS_OPT_STRING(opts, data, "data", "TEXT", "training text"),
    DS_OPT_OUTPUT(opts, out, "F", "output checkpoint, in B.h5's dtypes, with its tokenizer"),
    DS_OPT_INT(opts, steps, "steps", "N", 0, 1 << 30, "200", "optimizer steps"),
    DS_OPT_DOUBLE(opts, lr, "lr", "LR", 0, 10, "1e-3", "learning rate"),
    DS_OPT_INT(opts, batch, "batch", "B", 1, 1 << 16, "8", "sequences per step, shared out across ranks"),
    DS_OPT_INT(opts, T, "seq-len", "T", 1, 1 << 20, "128", "tokens per sequence, at most the model's max_seq_len"),
    DS_OPT_I64(opts, seed, "seed", "S", 0, INT64_MAX, "1234", "batch sampling seed"),
    DS_OPT_DOUBLE(opts, wd, "weight-decay", "W", 0, 10, "0", "decoupled weight decay"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup finetune --base B.h5 --data TEXT -o F.h5 [options]",
    .about = "Fine-tune every weight of B.h5 with AdamW (beta 0.9/0.999, constant LR) on next-token\n"
             "cross-entropy. TEXT splits into documents (blank lines or <|endoftext|>), each tokenized with\n"
             "BOS and concatenated; a batch is B windows of T+1 tokens at seeded random offsets.",
    .opts = options,
    .epilog = "Deterministic for a seed and a number of ranks. Another number of ranks gives weights that\n"
              "agree to float rounding, not bit for bit: each rank sums the gradient over its own rows and\n"
              "the all-reduce adds those partial sums, so the grouping follows the rank count.",
    .check = check};

/* Collective: --steps AdamW steps on m; *loss receives the last step's
 * loss. A step whose loss is not finite (the loss sum being finite implies
 * the logits were) stops the training: exit 3 naming the step. */
static int train(const ds_ctx *ctx, const opts *o, ds_llama *m, const ds_tokens *data, double *secs, double *loss)
{
    ds_llama_threads_auto(ctx);
    int64_t lo, hi;
    ds_shard_range(o->batch, ctx->rank, ctx->size, &lo, &hi);
    const int nloc = (int)(hi - lo), T = o->T, rows = nloc > 0 ? nloc : 1;
    ds_llama_act *a = ds_llama_act_new(m, rows, T);
    ds_llama_grads g;
    ds_llama_grads_init(&g, m, NULL);
    ds_adamw opt;
    ds_adamw_init(&opt, m, (float)o->lr, (float)o->wd);
    int *tokens = ds_malloc((size_t)rows * T * sizeof *tokens);
    int *targets = ds_malloc((size_t)rows * T * sizeof *targets);
    const float scale = 1.0f / (float)((long)o->batch * T);
    ds_progress prog;
    ds_progress_init(&prog, ctx, "step", o->steps);
    double t0 = ds_now();
    int rc = 0;
    *loss = 0;
    for (int step = 1; step <= o->steps && !rc; step++) {
        ds_tokens_batch(data, T, o->batch, (uint64_t)o->seed, step, lo, hi, tokens, targets);
        ds_llama_grads_zero(&g);
        double lsum = 0;
        if (nloc > 0) {
            ds_llama_forward(m, a, tokens, nloc, T);
            lsum = ds_llama_loss_ce(a, targets, scale, NULL);
            ds_llama_backward(m, a, &g);
        }
        if (ctx->size > 1) {
            MPI_Allreduce(MPI_IN_PLACE, g.data, (int)g.numel, MPI_FLOAT, MPI_SUM, ctx->comm);
            MPI_Allreduce(MPI_IN_PLACE, &lsum, 1, MPI_DOUBLE, MPI_SUM, ctx->comm);
        }
        /* lsum is all-reduced: every rank stops at the same step */
        if (!isfinite(lsum)) {
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the loss is not finite at step %d (non-finite logits)",
                                          o->base, step));
            break;
        }
        ds_adamw_step(&opt, m, &g);
        *loss = lsum / (double)((long)o->batch * T);
        ds_progress_step(&prog, step, "loss %.4f", *loss);
    }
    *secs = ds_now() - t0;
    free(tokens);
    free(targets);
    ds_adamw_free(&opt);
    ds_llama_grads_free(&g);
    ds_llama_act_free(a);
    return rc;
}

/* The trained weights (the same on every rank): exit 3 naming the first
 * non-finite tensor, before anything is written. */
static int check_finite(const ds_llama *m, const char *out)
{
    for (int i = 0; i < m->n_tensors; i++) {
        int64_t bad = ds_find_nonfinite(DS_DTYPE_F32, m->w[i], (size_t)ds_tinfo_numel(&m->tinfo[i]));
        if (bad >= 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: non-finite value at element %lld after training, not written",
                          out, m->tinfo[i].name, (long long)bad);
    }
    return 0;
}

int ds_job_finetune(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    /* Refuse an output that is an input (even with --overwrite) or that
     * exists, before spending the training time. */
    const char *outs[] = {o.out}, *ins[] = {o.base, o.data};
    if ((rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 1, ins, 2)))) return rc;
    if ((rc = ds_out_begin(ctx, o.out, o.overwrite))) return rc;
    ds_tokens data;
    if ((rc = ds_ctx_agree(ctx, ds_tokens_read(o.data, &data)))) {
        ds_tokens_free(&data);
        return rc;
    }
    ds_llama m;
    ds_tokenizer tok;
    ds_dtype *dtypes;
    if ((rc = ds_llama_load_path(ctx, o.base, &m, &tok, &dtypes))) {
        ds_tokens_free(&data);
        return rc;
    }
    rc = ds_tokens_encode(&data, &tok);
    if (!rc && o.T > m.cfg.max_seq_len)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", o.T, m.cfg.max_seq_len);
    else if (!rc && data.n < o.T + 1)
        rc = ds_err(DS_EXIT_INPUT, "%s: %lld tokens, fewer than --seq-len + 1 = %d", o.data, (long long)data.n, o.T + 1);
    if (!(rc = ds_ctx_agree(ctx, rc))) {
        /* before the activations are allocated: this rank's share of a batch */
        int64_t lo, hi;
        ds_shard_range(o.batch, ctx->rank, ctx->size, &lo, &hi);
        char what[64];
        snprintf(what, sizeof what, "--batch %d --seq-len %d", o.batch, o.T);
        rc = ds_mem_check(ctx, ds_llama_act_bytes(&m.cfg, hi > lo ? hi - lo : 1, o.T), what,
                          " (lower --batch or --seq-len, or use more nodes)");
    }
    if (!rc) {
        double secs, loss;
        rc = train(ctx, &o, &m, &data, &secs, &loss);
        if (!rc) rc = ds_ctx_agree(ctx, check_finite(&m, o.out));
        if (!rc) rc = ds_llama_save(&m, ctx, o.out, dtypes, &tok, o.overwrite);
        if (!rc && !ctx->quiet)
            ds_printf0(ctx, "[finetune] wrote %s: %d steps, last loss %.4f, %.0f tokens/s, peak RSS %.1f MiB\n", o.out,
                       o.steps, loss, secs > 0 ? (double)o.steps * o.batch * o.T / secs : 0.0,
                       ds_peak_rss() / 1048576.0);
    }
    ds_tokens_free(&data);
    free(dtypes);
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    return rc;
}
