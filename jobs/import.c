/* deltasoup import: a llama2.c checkpoint or Hugging Face safetensors into an
 * HDF5 model checkpoint. Tensors are shared out by size; each rank reads
 * (pread / mmap) and writes only its own, one tensor at a time. */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_model.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "src/jobs.h"
#include "src/shard.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup import --from llama2c MODEL.bin [--tokenizer TOK.bin] -o OUT.h5 [options]\n"
               "       deltasoup import --from safetensors FILE... [--config config.json] -o OUT.h5 [options]\n"
               "Convert a model into a deltasoup HDF5 checkpoint (Hugging Face Llama names and layout).\n"
               "  --from KIND          llama2c (legacy llama2.c .bin: q/k rows go from interleaved RoPE\n"
               "                       pairs to rotate-half order) or safetensors (one file, the shards,\n"
               "                       or model.safetensors.index.json)\n"
               "  -o, --output OUT.h5  the checkpoint to write (atomically: OUT.h5.tmp, then renamed)\n"
               "  --tokenizer TOK.bin  llama2.c tokenizer to store under /tokenizer\n"
               "  --config FILE        Hugging Face config.json (default: config.json beside the first file)\n"
               "  --dtype T            f32, f16 or bf16 (default: llama2c f32; safetensors: as stored)\n"
               "  --allow-nonfinite    import NaN/Inf weights instead of refusing them\n"
               "  --overwrite          replace an existing OUT.h5\n"
               "  --json               print a JSON summary (output, n_tensors, n_params, content_sha256)\n"
               "  --quiet              no progress lines\n"
               "exit: 0 ok, 2 usage, 3 bad input, 4 output exists or unwritable\n");
}

/* Where the tensors come from: one of the two readers. */
typedef struct {
    const char *what; /* the input, for messages */
    ds_llama2c *l2c;
    ds_st_set *st;
} source;

static int nonfinite_check(const char *file, const ds_tinfo *t, const void *data, int allow)
{
    int64_t k = ds_find_nonfinite(t->dtype, data, (size_t)ds_tinfo_numel(t));
    if (k < 0 || allow) return 0;
    float v;
    ds_to_f32(t->dtype, (const char *)data + (size_t)k * ds_dtype_size(t->dtype), &v, 1);
    return ds_err(DS_EXIT_INPUT, "%s: tensor %s: non-finite value %s at index %lld (--allow-nonfinite imports it)",
                  file, t->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (long long)k);
}

/* Read tensor t (as listed for the output) and write it. buf holds the
 * largest tensor in float32 (llama2c). */
static int import_one(source *s, ds_model_file *mf, const ds_tinfo *t, float *buf, int allow)
{
    int rc;
    if (s->l2c) {
        ds_tinfo src = *t;
        src.dtype = DS_DTYPE_F32;
        if ((rc = ds_llama2c_read(s->l2c, t->name, buf))) return rc;
        if ((rc = nonfinite_check(s->what, &src, buf, allow))) return rc;
        return ds_model_write_tensor(mf, t->name, DS_DTYPE_F32, buf);
    }
    int i = ds_st_set_find(s->st, t->name);
    ds_st_file *f = s->st->files[s->st->file_of[i]];
    int j = s->st->index_in[i];
    const void *data;
    void *owned;
    ds_st_view(f, j, &data, &owned);
    rc = nonfinite_check(f->path, &f->h.tensors[j].info, data, allow);
    if (!rc) rc = ds_model_write_tensor(mf, t->name, f->h.tensors[j].info.dtype, data);
    free(owned);
    ds_st_release(f, j);
    return rc;
}

/* Match the safetensors set against the Llama tensors of cfg: every one
 * present with its shape and a float dtype; nothing else but tensors that
 * carry no information (rotary inv_freq buffers, a tied lm_head). Sets each
 * expected tensor's dtype to the stored one unless want >= 0. */
static int st_match(const ds_ctx *ctx, const ds_st_set *s, const char *cfgpath, const ds_config *cfg, int n,
                    ds_tinfo *t, int want)
{
    for (int k = 0; k < n; k++) {
        int i = ds_st_set_find(s, t[k].name);
        if (i < 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: missing (the model of %s needs it)", s->files[0]->path,
                          t[k].name, cfgpath);
        const ds_tinfo *g = &s->info[i];
        const char *file = s->files[s->file_of[i]]->path;
        char sa[96], sb[96];
        if (!ds_tinfo_same_shape(g, &t[k]))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s implies %s", file, t[k].name,
                          ds_shape_str(g, sa, sizeof sa), cfgpath, ds_shape_str(&t[k], sb, sizeof sb));
        if (g->dtype != DS_DTYPE_F32 && g->dtype != DS_DTYPE_F16 && g->dtype != DS_DTYPE_BF16)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype %s (F32, F16 or BF16 expected)", file, t[k].name,
                          ds_dtype_name(g->dtype));
        t[k].dtype = want >= 0 ? (ds_dtype)want : g->dtype;
    }
    for (int i = 0; i < s->n; i++) {
        const char *name = s->info[i].name, *file = s->files[s->file_of[i]]->path;
        int expected = 0;
        for (int k = 0; k < n && !expected; k++) expected = strcmp(t[k].name, name) == 0;
        if (expected) continue;
        size_t nl = strlen(name);
        if (nl > 28 && strcmp(name + nl - 28, ".self_attn.rotary_emb.inv_freq") == 0) continue;
        if (cfg->tied_embeddings && strcmp(name, "lm_head.weight") == 0) {
            ds_printf0(ctx, "[import] note: %s: lm_head.weight ignored (tie_word_embeddings is true in %s)\n", file,
                       cfgpath);
            continue;
        }
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: not a tensor of the Llama model of %s", file, name, cfgpath);
    }
    return 0;
}

int ds_job_import(ds_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", 1, 0, 'f'},   {"output", 1, 0, 'o'},   {"tokenizer", 1, 0, 't'}, {"config", 1, 0, 'c'},
        {"dtype", 1, 0, 'd'},  {"allow-nonfinite", 0, 0, 'a'}, {"overwrite", 0, 0, 'w'}, {"json", 0, 0, 'j'},
        {"quiet", 0, 0, 'q'},  {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    const char *from = NULL, *out = NULL, *tokpath = NULL, *cfgpath = NULL;
    int want = -1, allow = 0, overwrite = 0, json = 0, rc = 0, c;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 'o': out = optarg; break;
        case 't': tokpath = optarg; break;
        case 'c': cfgpath = optarg; break;
        case 'd':
            if (strcmp(optarg, "f32") == 0) want = DS_DTYPE_F32;
            else if (strcmp(optarg, "f16") == 0) want = DS_DTYPE_F16;
            else if (strcmp(optarg, "bf16") == 0) want = DS_DTYPE_BF16;
            else rc = ds_err(DS_EXIT_USAGE, "--dtype: expected f32, f16 or bf16, got '%s'", optarg);
            break;
        case 'a': allow = 1; break;
        case 'w': overwrite = 1; break;
        case 'j': json = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'h': usage(ctx); return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option '%s' (see deltasoup import --help)", argv[optind - 1]);
        }
    }
    int l2c = from && strcmp(from, "llama2c") == 0, st = from && strcmp(from, "safetensors") == 0;
    int nin = argc - optind;
    if (!rc && !l2c && !st) rc = ds_err(DS_EXIT_USAGE, "--from llama2c or --from safetensors is required");
    else if (!rc && !out) rc = ds_err(DS_EXIT_USAGE, "-o OUT.h5 is required");
    else if (!rc && nin < 1) rc = ds_err(DS_EXIT_USAGE, "no input file given");
    else if (!rc && l2c && nin != 1) rc = ds_err(DS_EXIT_USAGE, "--from llama2c takes one MODEL.bin");
    else if (!rc && l2c && cfgpath) rc = ds_err(DS_EXIT_USAGE, "--config is for --from safetensors");
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    char **in = argv + optind;

    /* Every rank opens the input (headers only) and checks it. */
    source src = {.what = in[0]};
    ds_config cfg;
    char *cfgdefault = NULL;
    if (l2c) {
        if (!(rc = ds_llama2c_open(in[0], &src.l2c))) cfg = *ds_llama2c_config(src.l2c);
    } else {
        if (!cfgpath) {
            char *d = ds_strdup(in[0]);
            size_t n = strlen(dirname(d)) + 16;
            cfgdefault = ds_malloc(n);
            snprintf(cfgdefault, n, "%s/config.json", d);
            free(d);
            cfgpath = cfgdefault;
        }
        rc = ds_hf_config_load(cfgpath, &cfg);
        if (!rc) rc = ds_st_set_open(nin, in, &src.st);
    }
    ds_tokenizer tok = {0};
    int have_tok = 0;
    if (!rc && tokpath) have_tok = !(rc = ds_tokenizer_load_llama2c(tokpath, cfg.vocab_size, &tok));
    ds_tinfo *t = NULL;
    int n = 0;
    if (!rc) {
        n = ds_model_llama_tensors(&cfg, l2c && want >= 0 ? (ds_dtype)want : DS_DTYPE_F32, &t);
        if (st) rc = st_match(ctx, src.st, cfgpath, &cfg, n, t, want);
    }
    ds_model_file *mf = NULL;
    if (!(rc = ds_ctx_agree(ctx, rc)))
        rc = ds_model_create(out, ctx->comm, &cfg, n, t, have_tok ? &tok : NULL, overwrite, &mf);

    if (!rc) {
        int64_t *sizes = ds_malloc(sizeof *sizes * (size_t)n), biggest = 0, params = 0;
        int *owner = ds_malloc(sizeof *owner * (size_t)n), mine = 0;
        for (int k = 0; k < n; k++) {
            sizes[k] = ds_tinfo_numel(&t[k]);
            biggest = sizes[k] > biggest ? sizes[k] : biggest;
            params += sizes[k];
        }
        ds_shard_by_size(n, sizes, ctx->size, owner);
        for (int k = 0; k < n; k++) mine += owner[k] == ctx->rank;
        float *buf = l2c ? ds_malloc(sizeof(float) * (size_t)biggest) : NULL;
        ds_progress pr;
        ds_progress_init(&pr, ctx, "tensors (rank 0)", mine);
        const int every = mine / 10 > 1 ? mine / 10 : 1; /* about ten lines */
        int done = 0;
        for (int k = 0; k < n && !rc; k++) {
            if (owner[k] != ctx->rank) continue;
            rc = import_one(&src, mf, &t[k], buf, allow);
            if (++done % every == 0 || done == mine) ds_progress_step(&pr, done, "%s", t[k].name);
        }
        free(buf);
        /* All ranks learn whether everyone succeeded; the failing rank's
         * message is printed once, by commit. */
        int any;
        MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, ctx->comm);
        char hex[65] = "";
        if (!any) rc = ds_model_content_hash(mf, hex);
        rc = ds_model_commit(mf, rc, any || rc ? NULL : hex);
        if (!rc) {
            if (json && ctx->rank == 0) {
                json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s}", "input", in[0], "from", from, "output", out,
                                      "n_tensors", n, "n_params", (json_int_t)params, "content_sha256", hex);
                char *text = json_dumps(j, JSON_COMPACT);
                ds_printf0(ctx, "%s\n", text);
                free(text);
                json_decref(j);
            } else if (!json)
                ds_printf0(ctx, "[import] %s -> %s: %d tensors, %lld parameters, content sha256 %s\n", in[0], out, n,
                           (long long)params, hex);
        }
        free(sizes);
        free(owner);
    }
    free(t);
    if (have_tok) ds_tokenizer_free(&tok);
    ds_llama2c_close(src.l2c);
    ds_st_set_close(src.st);
    free(cfgdefault);
    return rc;
}
