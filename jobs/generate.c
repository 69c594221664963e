/* deltasoup generate: text from a model with the KV-cached engine (rank 0
 * generates; other ranks only take part in loading). */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/delta_apply.h"
#include "src/bitdelta.h"
#include "src/jobs.h"
#include "io/model_io.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup generate --model M.h5 [--delta D.bd.h5 [--force]] [--prompt TEXT]\n"
               "                          [--max-tokens N] [--temperature T] [--seed S] [--json] [--quiet]\n"
               "Continue a prompt (after BOS) until EOS, BOS, --max-tokens or the model's max_seq_len.\n"
               "  --model M.h5      checkpoint with a tokenizer\n"
               "  --delta D.bd.h5   add a BitDelta delta made for M.h5 to the weights (--force: for another base)\n"
               "  --prompt TEXT     text to continue (default: empty)\n"
               "  --max-tokens N    new tokens at most (default 256)\n"
               "  --temperature T   0 = greedy (argmax), else sample softmax(logits / T) (default 1.0)\n"
               "  --seed S          sampling seed (default 42)\n"
               "  --json            print {prompt_tokens, tokens, text, tokens_per_s} instead of the text\n"
               "  --quiet           no timing line on stderr\n");
}

/* Index of the next token: argmax at temperature 0, else a sample. */
static int pick(float *z, int V, float temp, ds_rng *rng)
{
    int best = 0;
    for (int j = 1; j < V; j++) best = z[j] > z[best] ? j : best;
    if (temp == 0) return best;
    const float mx = z[best];
    double sum = 0;
    for (int j = 0; j < V; j++) sum += (z[j] = expf((z[j] - mx) / temp));
    double u = ds_rng_uniform(rng) * sum, c = 0;
    for (int j = 0; j < V; j++)
        if ((c += z[j]) > u) return j;
    return best; /* u landed on the rounding slack at the end */
}

int ds_job_generate(ds_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"model", 1, 0, 'm'},       {"delta", 1, 0, 'd'},
                                         {"prompt", 1, 0, 'p'},      {"max-tokens", 1, 0, 'n'},
                                         {"temperature", 1, 0, 't'}, {"seed", 1, 0, 's'},
                                         {"json", 0, 0, 'j'},        {"quiet", 0, 0, 'q'},
                                         {"force", 0, 0, 'F'}, {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    const char *model = NULL, *delta = NULL, *prompt = "";
    long max_tokens = 256, seed = 42;
    double temp = 1.0;
    int json = 0, rc = 0, c;
    int force = 0;
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': delta = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': rc = ds_parse_int("--max-tokens", optarg, 1, 1 << 24, &max_tokens); break;
        case 't': rc = ds_parse_double("--temperature", optarg, 0, 100, &temp); break;
        case 's': rc = ds_parse_int("--seed", optarg, 0, INT64_MAX, &seed); break;
        case 'j': json = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'F': force = 1; break;
        case 'h': usage(ctx); return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option (see deltasoup generate --help)");
        }
    }
    if (!rc && optind < argc) rc = ds_err(DS_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
    if (!rc && !model) rc = ds_err(DS_EXIT_USAGE, "--model is required");
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;

    ds_llama m;
    ds_tokenizer tok;
    if ((rc = ds_llama_load_path(ctx, model, &m, &tok, NULL))) return rc;
    if (delta && (rc = ds_delta_apply_to_model(ctx, delta, model, force, &m.cfg, m.n_tensors, m.tinfo, m.w))) {
        ds_llama_free(&m);
        ds_tokenizer_free(&tok);
        return rc;
    }
    ds_llama_threads_auto(ctx); /* collective */
    if (ctx->rank == 0) {
        int *ids = ds_malloc((strlen(prompt) + 3) * sizeof *ids);
        const int np = ds_tokenizer_encode(&tok, prompt, 1, 0, ids);
        const int V = m.cfg.vocab_size;
        int total = np + (int)max_tokens;
        if (total > m.cfg.max_seq_len) total = m.cfg.max_seq_len;
        if (np >= total) {
            rc = ds_err(DS_EXIT_USAGE, "--prompt: %d tokens leave no room in the model's max_seq_len %d", np,
                        m.cfg.max_seq_len);
        } else {
            ds_llama_kv kv;
            ds_llama_kv_init(&kv, &m, total);
            ds_rng rng = {(uint64_t)seed};
            int *out = ds_malloc((size_t)total * sizeof *out), n = 0, prev = ids[np - 1];
            json_t *jp = json ? json_array() : NULL;
            if (!json) {
                char *text = ds_tokenizer_decode_ids(&tok, ids, np, NULL);
                if (text) fputs(text, stdout);
                free(text);
            }
            for (int i = 0; i < np && jp; i++) json_array_append_new(jp, json_integer(ids[i]));
            double t0 = ds_now();
            float *z = NULL;
            for (int pos = 0; pos < np; pos++) z = ds_llama_step(&m, &kv, ids[pos], pos);
            for (int pos = np; pos < total; pos++) {
                int next = pick(z, V, (float)temp, &rng);
                if (next == DS_TOK_EOS || next == DS_TOK_BOS) break;
                out[n++] = next;
                if (!json) {
                    int len;
                    const char *piece = ds_tokenizer_decode(&tok, prev, next, &len);
                    if (piece) fwrite(piece, 1, (size_t)len, stdout);
                    fflush(stdout);
                }
                prev = next;
                if (pos + 1 < total) z = ds_llama_step(&m, &kv, next, pos);
            }
            double dt = ds_now() - t0;
            if (json) {
                json_t *jt = json_array();
                for (int i = 0; i < n; i++) json_array_append_new(jt, json_integer(out[i]));
                int *all = ds_malloc((size_t)(np + n) * sizeof *all);
                memcpy(all, ids, (size_t)np * sizeof *all);
                memcpy(all + np, out, (size_t)n * sizeof *all);
                char *text = ds_tokenizer_decode_ids(&tok, all, np + n, NULL);
                json_t *o = json_pack("{s:o, s:o, s:s, s:f}", "prompt_tokens", jp, "tokens", jt, "text",
                                      text ? text : "", "tokens_per_s", dt > 0 ? (np + n) / dt : 0.0);
                char *s = json_dumps(o, JSON_COMPACT);
                printf("%s\n", s);
                free(s);
                json_decref(o);
                free(text);
                free(all);
            } else {
                printf("\n");
            }
            if (!ctx->quiet)
                fprintf(stderr, "[generate] %d prompt + %d new tokens in %.3f s (%.1f tokens/s)\n", np, n, dt,
                        dt > 0 ? (np + n) / dt : 0.0);
            free(out);
            ds_llama_kv_free(&kv);
        }
        free(ids);
    }
    ds_tokenizer_free(&tok);
    ds_llama_free(&m);
    return ds_ctx_agree(ctx, rc);
}
