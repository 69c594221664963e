/* deltasoup finetune: full-parameter AdamW fine-tuning on a text,
 * data-parallel (each rank a share of every batch; gradients all-reduced so
 * every rank keeps identical weights).
 *
 * options -> text (io/tokens.h, read before the model so that bad data
 * costs no model load) -> model (ds_llama_load_path) -> token stream ->
 * AdamW steps on random windows (ds_tokens_batch) -> ds_llama_save.
 * With --dp: DP-SGD (src/dp_sgd.h; the accountant src/dp_rdp.h) on Poisson
 * samples of fixed windows, the record written as root attributes
 * (io/dp_record.h). */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/dp_record.h"
#include "io/model_io.h"
#include "io/outfile.h"
#include "io/tokens.h"
#include "src/dp_rdp.h"
#include "src/dp_sgd.h"
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
    int dp;
    double sigma, target, clip, delta; /* NAN when not given */
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->base || !o->data || !o->out) return ds_err(DS_EXIT_USAGE, "--base, --data and -o are required");
    if (!o->dp) {
        if (!isnan(o->sigma) || !isnan(o->target) || !isnan(o->clip) || !isnan(o->delta))
            return ds_err(DS_EXIT_USAGE, "--noise-multiplier, --target-epsilon, --max-grad-norm and --dp-delta go with --dp");
        return 0;
    }
    if (isnan(o->sigma) == isnan(o->target))
        return ds_err(DS_EXIT_USAGE, "--dp needs exactly one of --noise-multiplier S and --target-epsilon E");
    if (!isnan(o->sigma) && !(o->sigma > 0 && isfinite(o->sigma)))
        return ds_err(DS_EXIT_USAGE, "--noise-multiplier must be finite and > 0, got %g", o->sigma);
    if (!isnan(o->target) && !(o->target > 0 && isfinite(o->target)))
        return ds_err(DS_EXIT_USAGE, "--target-epsilon must be finite and > 0, got %g", o->target);
    if (isnan(o->clip)) return ds_err(DS_EXIT_USAGE, "--dp needs --max-grad-norm C");
    if (!(o->clip > 0 && isfinite(o->clip)))
        return ds_err(DS_EXIT_USAGE, "--max-grad-norm must be finite and > 0, got %g", o->clip);
    if (!isnan(o->delta) && !(o->delta > 0 && o->delta < 1))
        return ds_err(DS_EXIT_USAGE, "--dp-delta must be in (0, 1), got %g", o->delta);
    if (o->steps < 1) return ds_err(DS_EXIT_USAGE, "--dp needs --steps >= 1");
    return 0;
}

#define DP_OPT(f, name, meta, help) \
    {name, 0, DS_OPT_T_DOUBLE, offsetof(opts, f), meta, help, NULL, -INFINITY, INFINITY, NULL, 0, NULL}

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
    DS_OPT_FLAG(opts, dp, "dp", "DP-SGD (docs/privacy.md): Poisson-sampled windows, per-example clipping,\n"
                                "Gaussian noise; the privacy record goes into the output's attributes"),
    DP_OPT(sigma, "noise-multiplier", "S", "--dp: noise stddev / clip norm (> 0)"),
    DP_OPT(target, "target-epsilon", "E", "--dp: the noise multiplier that reaches epsilon E instead\n"
                                          "(the accountant's search, tolerance 0.01)"),
    DP_OPT(clip, "max-grad-norm", "C", "--dp: per-example L2 clip norm over all weights (> 0)"),
    DP_OPT(delta, "dp-delta", "D", "--dp: delta of the (epsilon, delta) guarantee, in (0, 1) [1e-5]"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup finetune --base B.h5 --data TEXT -o F.h5 [options]\n"
             "deltasoup finetune ... --dp (--noise-multiplier S | --target-epsilon E) --max-grad-norm C [--dp-delta D]",
    .about = "Fine-tune every weight of B.h5 with AdamW (beta 0.9/0.999, constant LR) on next-token\n"
             "cross-entropy. TEXT splits into documents (blank lines or <|endoftext|>), each tokenized with\n"
             "BOS and concatenated; a batch is B windows of T+1 tokens at seeded random offsets.",
    .opts = options,
    .epilog = "Deterministic for a seed and a number of ranks. Another number of ranks gives weights that\n"
              "agree to float rounding, not bit for bit: each rank sums the gradient over its own rows and\n"
              "the all-reduce adds those partial sums, so the grouping follows the rank count.\n"
              "--dp: an example is a window of T+1 tokens at offset i*T of the stream (floor((n-1)/T) of\n"
              "them); step s takes each with probability Q = B / examples (Poisson); per-example gradients\n"
              "of the mean CE are clipped to norm C, summed with N(0, (S*C)^2) noise per weight, divided\n"
              "by B. The sum is exact (fixed point), so the weights are the same bits for any number of\n"
              "ranks. Epsilon at D by the RDP accountant (deltasoup privacy).",
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

/* The DP plan once the stream is known: examples, sample rate, noise
 * multiplier (given, or the accountant's for --target-epsilon), epsilon. */
static int dp_plan(const opts *o, const ds_tokens *data, int64_t *n_examples, ds_dp_record *r)
{
    const int64_t N = (data->n - 1) / o->T;
    *n_examples = N;
    if (o->batch > N)
        return ds_err(DS_EXIT_USAGE, "--batch %d exceeds the %lld examples of %s (windows of --seq-len %d + 1 tokens): "
                      "sample rate %g > 1", o->batch, (long long)N, o->data, o->T, (double)o->batch / (double)N);
    *r = (ds_dp_record){.has = 1, .delta = isnan(o->delta) ? 1e-5 : o->delta, .max_grad_norm = o->clip,
                        .sample_rate = (double)o->batch / (double)N, .steps = o->steps, .accountant = "rdp"};
    if (!isnan(o->target)) {
        double eps;
        int rc = ds_dp_noise_multiplier(o->target, r->delta, r->sample_rate, o->steps, 0.01, &r->noise_multiplier,
                                        &eps, NULL);
        if (rc)
            return ds_err(DS_EXIT_INPUT, "--target-epsilon %g at --dp-delta %g: out of reach for sample rate %g and %d "
                          "steps (noise multiplier over 1e6)", o->target, r->delta, r->sample_rate, o->steps);
    } else {
        r->noise_multiplier = o->sigma;
    }
    ds_dp_phase ph = {r->sample_rate, r->noise_multiplier, o->steps};
    double order;
    ds_dp_epsilon(&ph, 1, r->delta, &r->epsilon, &order);
    return 0;
}

/* Collective: one DP-SGD step's gradient into g (every rank the same):
 * this rank's share of the Poisson sample clipped and summed, its slice of
 * the noise, an exact integer all-reduce. *lsum: the sample's loss sum,
 * *n: its size. */
static void dp_grad(const ds_ctx *ctx, const opts *o, const ds_llama *m, ds_llama_act *a, ds_llama_grads *g,
                    ds_dp_accum *acc, const ds_tokens *data, const ds_dp_record *r, int64_t N, int64_t *idx,
                    int step, double *lsum, int64_t *n)
{
    *n = ds_dp_sample((uint64_t)o->seed, step, N, r->sample_rate, idx);
    int64_t lo, hi, plo, phi;
    ds_shard_range(*n, ctx->rank, ctx->size, &lo, &hi);
    ds_shard_range(g->numel, ctx->rank, ctx->size, &plo, &phi);
    ds_dp_accum_zero(acc);
    ds_dp_clip_accumulate(m, a, g, acc, data->tok, idx + lo, hi - lo, o->T, r->max_grad_norm, NULL, lsum);
    ds_dp_accum_noise(acc, (uint64_t)o->seed, step, r->noise_multiplier, r->max_grad_norm, plo, phi);
    if (ctx->size > 1) {
        MPI_Allreduce(MPI_IN_PLACE, acc->acc, (int)acc->numel, MPI_INT64_T, MPI_SUM, ctx->comm);
        MPI_Allreduce(MPI_IN_PLACE, lsum, 1, MPI_DOUBLE, MPI_SUM, ctx->comm);
    }
    ds_dp_accum_result(acc, (double)o->batch, g->data);
}

/* Collective: --steps DP-SGD steps (AdamW on the noisy clipped mean);
 * *loss: the last sample's mean loss. */
static int train_dp(const ds_ctx *ctx, const opts *o, ds_llama *m, const ds_tokens *data, int64_t N,
                    const ds_dp_record *r, double *secs, double *loss)
{
    /* One BLAS thread: OpenBLAS's results depend on its thread count, and
     * the per-example gradients must not depend on how many ranks share a
     * node (docs/privacy.md: run one rank per core). */
    ds_llama_threads_auto(ctx);
    ds_llama_set_threads(1);
    ds_llama_act *a = ds_llama_act_new(m, 1, o->T);
    ds_llama_grads g;
    ds_llama_grads_init(&g, m, NULL);
    ds_dp_accum acc;
    ds_dp_accum_init(&acc, g.numel, r->max_grad_norm, r->noise_multiplier, N);
    ds_adamw opt;
    ds_adamw_init(&opt, m, (float)o->lr, (float)o->wd);
    int64_t *idx = ds_malloc(sizeof *idx * (size_t)N);
    ds_progress prog;
    ds_progress_init(&prog, ctx, "step", o->steps);
    double t0 = ds_now();
    int rc = 0;
    *loss = 0;
    for (int step = 1; step <= o->steps; step++) {
        double lsum;
        int64_t n;
        dp_grad(ctx, o, m, a, &g, &acc, data, r, N, idx, step, &lsum, &n);
        if (!isfinite(lsum)) {
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the loss or a gradient is not finite at step %d",
                                          o->base, step));
            break;
        }
        ds_adamw_step(&opt, m, &g);
        *loss = n ? lsum / (double)n : 0;
        ds_progress_step(&prog, step, "loss %.4f, %lld examples", *loss, (long long)n);
    }
    *secs = ds_now() - t0;
    free(idx);
    ds_adamw_free(&opt);
    ds_dp_accum_free(&acc);
    ds_llama_grads_free(&g);
    ds_llama_act_free(a);
    return rc;
}

static int save_record(ds_model_file *f, const void *r) { return ds_dp_record_write(ds_model_root(f), r, 1); }

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

/* Collective, once the stream is encoded: the DP plan, the memory check,
 * training, the finite check, the checkpoint (with the DP record), report. */
static int run(const ds_ctx *ctx, const opts *o, ds_llama *m, const ds_tokens *data, const ds_dtype *dtypes,
               const ds_tokenizer *tok)
{
    ds_dp_record r = {0};
    int64_t N = 0;
    int rc = o->dp ? ds_ctx_agree(ctx, dp_plan(o, data, &N, &r)) : 0;
    if (rc) return rc;
    /* before the activations are allocated: this rank's share of a batch
     * (DP: one example at a time, plus the gradient and the accumulator) */
    int64_t lo, hi;
    ds_shard_range(o->batch, ctx->rank, ctx->size, &lo, &hi);
    char what[64];
    snprintf(what, sizeof what, "--batch %d --seq-len %d", o->batch, o->T);
    double need = o->dp ? ds_llama_act_bytes(&m->cfg, 1, o->T) + 12.0 * (double)m->numel
                        : ds_llama_act_bytes(&m->cfg, hi > lo ? hi - lo : 1, o->T);
    rc = ds_mem_check(ctx, need, what, " (lower --batch or --seq-len, or use more nodes)");
    if (rc) return rc;
    double secs, loss;
    rc = o->dp ? train_dp(ctx, o, m, data, N, &r, &secs, &loss) : train(ctx, o, m, data, &secs, &loss);
    if (!rc) rc = ds_ctx_agree(ctx, check_finite(m, o->out));
    if (!rc) rc = ds_llama_save_attrs(m, ctx, o->out, dtypes, tok, o->overwrite, o->dp ? save_record : NULL, &r);
    if (rc || ctx->quiet) return rc;
    ds_printf0(ctx, "[finetune] wrote %s: %d steps, last loss %.4f, %.0f tokens/s, peak RSS %.1f MiB\n", o->out,
               o->steps, loss, secs > 0 ? (double)o->steps * o->batch * o->T / secs : 0.0, ds_peak_rss() / 1048576.0);
    if (o->dp)
        ds_printf0(ctx, "[finetune] DP-SGD: epsilon %.4f at delta %g (RDP), noise multiplier %.4f, clip %g, "
                   "sample rate %.6g of %lld examples, %d steps\n", r.epsilon, r.delta, r.noise_multiplier,
                   r.max_grad_norm, r.sample_rate, (long long)N, o->steps);
    return 0;
}

int ds_job_finetune(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.sigma = NAN, .target = NAN, .clip = NAN, .delta = NAN};
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
    if (!(rc = ds_ctx_agree(ctx, rc))) rc = run(ctx, &o, &m, &data, dtypes, &tok);
    ds_tokens_free(&data);
    free(dtypes);
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    return rc;
}
