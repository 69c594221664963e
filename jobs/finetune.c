/* deltasoup finetune: full-parameter AdamW fine-tuning on a text,
 * data-parallel (each rank a share of every batch; gradients all-reduced so
 * every rank keeps identical weights). */
#include "config.h"
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "src/jobs.h"
#include "io/model_io.h"
#include "src/shard.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup finetune --base B.h5 --data TEXT -o F.h5 [--steps N] [--lr LR] [--batch B]\n"
               "                          [--seq-len T] [--seed S] [--weight-decay W] [--overwrite] [--quiet]\n"
               "Fine-tune every weight of B.h5 with AdamW (beta 0.9/0.999, constant LR) on next-token\n"
               "cross-entropy. TEXT splits into documents (blank lines or <|endoftext|>), each tokenized with\n"
               "BOS and concatenated; a batch is B windows of T+1 tokens at seeded random offsets.\n"
               "  --steps N         optimizer steps (default 200)\n"
               "  --lr LR           learning rate (default 1e-3)\n"
               "  --batch B         sequences per step, shared out across ranks (default 8)\n"
               "  --seq-len T       tokens per sequence (default 128, at most the model's max_seq_len)\n"
               "  --seed S          batch sampling seed (default 1234)\n"
               "  --weight-decay W  decoupled weight decay (default 0)\n"
               "  -o, --output F    output checkpoint, in B.h5's dtypes, with its tokenizer\n"
               "  --overwrite       replace an existing output\n"
               "Deterministic for a seed and a number of ranks.\n");
}

int ds_job_finetune(ds_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"base", 1, 0, 'b'},  {"data", 1, 0, 'D'},         {"output", 1, 0, 'o'}, {"steps", 1, 0, 'n'},
        {"lr", 1, 0, 'l'},    {"batch", 1, 0, 'B'},        {"seq-len", 1, 0, 'T'}, {"seed", 1, 0, 's'},
        {"weight-decay", 1, 0, 'w'}, {"overwrite", 0, 0, 'O'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    const char *base = NULL, *data = NULL, *out = NULL;
    long steps = 200, batch = 8, T = 128, seed = 1234;
    double lr = 1e-3, wd = 0;
    int overwrite = 0, rc = 0, c;
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'b': base = optarg; break;
        case 'D': data = optarg; break;
        case 'o': out = optarg; break;
        case 'n': rc = ds_parse_int("--steps", optarg, 0, 1L << 30, &steps); break;
        case 'l': rc = ds_parse_double("--lr", optarg, 0, 10, &lr); break;
        case 'B': rc = ds_parse_int("--batch", optarg, 1, 1 << 16, &batch); break;
        case 'T': rc = ds_parse_int("--seq-len", optarg, 1, 1 << 20, &T); break;
        case 's': rc = ds_parse_int("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 'w': rc = ds_parse_double("--weight-decay", optarg, 0, 10, &wd); break;
        case 'O': overwrite = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'h': usage(ctx); return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option (see deltasoup finetune --help)");
        }
    }
    if (!rc && optind < argc) rc = ds_err(DS_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!rc && (!base || !data || !out)) rc = ds_err(DS_EXIT_USAGE, "--base, --data and -o are required");
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    /* Refuse an existing output before spending the training time. */
    if ((rc = ds_out_begin(ctx, out, overwrite))) return rc;

    ds_text_docs docs;
    if ((rc = ds_ctx_agree(ctx, ds_text_load(data, &docs)))) {
        ds_text_docs_free(&docs);
        return rc;
    }
    ds_llama m;
    ds_tokenizer tok;
    ds_dtype *dtypes;
    if ((rc = ds_llama_load_path(ctx, base, &m, &tok, &dtypes))) {
        ds_text_docs_free(&docs);
        return rc;
    }
    /* The whole text as one token stream, every document after a BOS. */
    size_t cap = 0;
    for (int d = 0; d < docs.n; d++) cap += strlen(docs.docs[d]) + 3;
    int *stream = ds_malloc(cap * sizeof *stream);
    int64_t len = 0;
    for (int d = 0; d < docs.n; d++) len += ds_tokenizer_encode(&tok, docs.docs[d], 1, 0, stream + len);
    ds_text_docs_free(&docs);
    if (T > m.cfg.max_seq_len)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %ld exceeds the model's max_seq_len %d", T, m.cfg.max_seq_len);
    else if (len < T + 1)
        rc = ds_err(DS_EXIT_INPUT, "%s: %lld tokens, fewer than --seq-len + 1 = %ld", data, (long long)len, T + 1);
    rc = ds_ctx_agree(ctx, rc);

    if (!rc) {
        ds_llama_threads_auto(ctx);
        int64_t lo, hi;
        ds_shard_range(batch, ctx->rank, ctx->size, &lo, &hi);
        const int nloc = (int)(hi - lo), Ti = (int)T;
        ds_llama_act *a = ds_llama_act_new(&m, nloc > 0 ? nloc : 1, Ti);
        ds_llama_grads g;
        ds_llama_grads_init(&g, &m, NULL);
        ds_adamw opt;
        ds_adamw_init(&opt, &m, (float)lr, (float)wd);
        int *tokens = ds_malloc((size_t)(nloc > 0 ? nloc : 1) * Ti * sizeof *tokens);
        int *targets = ds_malloc((size_t)(nloc > 0 ? nloc : 1) * Ti * sizeof *targets);
        const float scale = 1.0f / (float)(batch * T);
        ds_progress prog;
        ds_progress_init(&prog, ctx, "step", steps);
        double t0 = ds_now(), loss = 0;
        for (long step = 1; step <= steps; step++) {
            /* Every rank draws the whole batch and keeps its rows. */
            ds_rng rng = {(uint64_t)seed * 0x9e3779b97f4a7c15ull + (uint64_t)step};
            for (long b = 0; b < batch; b++) {
                int64_t off = (int64_t)(ds_rng_u64(&rng) % (uint64_t)(len - T));
                if (b < lo || b >= hi) continue;
                memcpy(tokens + (b - lo) * Ti, stream + off, (size_t)Ti * sizeof *tokens);
                memcpy(targets + (b - lo) * Ti, stream + off + 1, (size_t)Ti * sizeof *targets);
            }
            ds_llama_grads_zero(&g);
            double lsum = 0;
            if (nloc > 0) {
                ds_llama_forward(&m, a, tokens, nloc, Ti);
                lsum = ds_llama_loss_ce(a, targets, scale, NULL);
                ds_llama_backward(&m, a, &g);
            }
            if (ctx->size > 1) {
                MPI_Allreduce(MPI_IN_PLACE, g.data, (int)g.numel, MPI_FLOAT, MPI_SUM, ctx->comm);
                MPI_Allreduce(MPI_IN_PLACE, &lsum, 1, MPI_DOUBLE, MPI_SUM, ctx->comm);
            }
            ds_adamw_step(&opt, &m, &g);
            loss = lsum / (double)(batch * T);
            ds_progress_step(&prog, step, "loss %.4f", loss);
        }
        double dt = ds_now() - t0;
        free(tokens);
        free(targets);
        ds_adamw_free(&opt);
        ds_llama_grads_free(&g);
        ds_llama_act_free(a);
        rc = ds_llama_save(&m, ctx, out, dtypes, &tok, overwrite);
        if (!rc && !ctx->quiet)
            ds_printf0(ctx, "[finetune] wrote %s: %ld steps, last loss %.4f, %.0f tokens/s, peak RSS %.1f MiB\n", out,
                       steps, loss, dt > 0 ? (double)steps * batch * T / dt : 0.0, ds_peak_rss() / 1048576.0);
    }
    free(stream);
    free(dtypes);
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    return rc;
}
