/* deltasoup eval: quality metrics of a model. Here: the plain --ppl TEXT
 * report (mean NLL per predicted token and perplexity), data-parallel across
 * ranks; --task and the many-delta options go to jobs/eval_tasks.c. */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "jobs/eval_tasks.h"
#include "io/delta_apply.h"
#include "src/bitdelta.h"
#include "src/jobs.h"
#include "io/model_io.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup eval --model M.h5 [--delta D.bd.h5 [--force]] --ppl TEXT [--seq-len N] [--json] [--quiet]\n"
               "Perplexity of a text: it splits into documents on blank lines or <|endoftext|>; each is\n"
               "tokenized with BOS and cut to --seq-len tokens; every token after BOS is predicted.\n"
               "  --model M.h5   checkpoint with a tokenizer\n"
               "  --delta D      add a BitDelta delta made for M.h5 to the weights (--force: for another base)\n"
               "  --ppl TEXT     text file\n"
               "  --seq-len N    tokens per document at most (default: the model's max_seq_len)\n"
               "  --json         print a JSON object instead of the table\n"
               "Documents are shared out across ranks; the result does not depend on their number.\n\n");
    ds_eval_tasks_usage(ctx);
}

int ds_job_eval(ds_ctx *ctx, int argc, char **argv)
{
    if (ds_eval_tasks_wanted(argc, argv)) return ds_eval_tasks_main(ctx, argc, argv);
    static const struct option opts[] = {{"model", 1, 0, 'm'}, {"delta", 1, 0, 'd'}, {"ppl", 1, 0, 'p'},
                                         {"seq-len", 1, 0, 'T'}, {"json", 0, 0, 'j'}, {"quiet", 0, 0, 'q'},
                                         {"force", 0, 0, 'F'}, {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    const char *model = NULL, *delta = NULL, *text = NULL;
    long seq_len = 0;
    int json = 0, rc = 0, c;
    int force = 0;
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': delta = optarg; break;
        case 'p': text = optarg; break;
        case 'T': rc = ds_parse_int("--seq-len", optarg, 2, 1 << 24, &seq_len); break;
        case 'j': json = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'F': force = 1; break;
        case 'h': usage(ctx); return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option (see deltasoup eval --help)");
        }
    }
    if (!rc && optind < argc) rc = ds_err(DS_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!rc && !model) rc = ds_err(DS_EXIT_USAGE, "--model is required");
    if (!rc && !text) rc = ds_err(DS_EXIT_USAGE, "--ppl TEXT or --task KIND:FILE is required");
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;

    ds_text_docs docs;
    if ((rc = ds_ctx_agree(ctx, ds_text_load(text, &docs)))) {
        ds_text_docs_free(&docs);
        return rc;
    }
    ds_llama m;
    ds_tokenizer tok;
    if ((rc = ds_llama_load_path(ctx, model, &m, &tok, NULL))) {
        ds_text_docs_free(&docs);
        return rc;
    }
    if (delta && (rc = ds_delta_apply_to_model(ctx, delta, model, force, &m.cfg, m.n_tensors, m.tinfo, m.w))) {
        ds_llama_free(&m);
        ds_tokenizer_free(&tok);
        ds_text_docs_free(&docs);
        return rc;
    }
    if (seq_len == 0) seq_len = m.cfg.max_seq_len;
    if (seq_len > m.cfg.max_seq_len)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %ld exceeds the model's max_seq_len %d", seq_len, m.cfg.max_seq_len);
    if (!(rc = ds_ctx_agree(ctx, rc))) {
        ds_llama_threads_auto(ctx);
        ds_ppl_result r;
        double t0 = ds_now();
        rc = ds_ctx_agree(ctx, ds_llama_ppl(ctx, &m, &tok, &docs, (int)seq_len, &r));
        double dt = ds_now() - t0;
        if (!rc && json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:f, s:i}", "task", "ppl", "model", model,
                                  "text", text, "seq_len", (int)seq_len, "documents", r.documents, "tokens",
                                  (json_int_t)r.tokens, "nll", r.nll, "ppl", r.ppl, "seconds", dt, "ranks",
                                  ctx->size);
            char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
            ds_printf0(ctx, "%s\n", s);
            free(s);
            json_decref(o);
        } else if (!rc) {
            ds_printf0(ctx,
                       "task        ppl\nmodel       %s\ntext        %s\nseq_len     %ld\ndocuments   %d\n"
                       "tokens      %lld\nnll         %.6f nats/token\nperplexity  %.4f\nseconds     %.2f\n",
                       model, text, seq_len, r.documents, (long long)r.tokens, r.nll, r.ppl, dt);
        }
    }
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    ds_text_docs_free(&docs);
    return rc;
}
