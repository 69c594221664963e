/* deltasoup export: an HDF5 model checkpoint to Hugging Face safetensors (+
 * config.json beside it). The file layout follows from the tensor list alone,
 * so rank 0 writes the header and sizes OUT.tmp, then every rank pwrites the
 * tensors it owns at their offsets, one tensor in memory at a time. */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_model.h"
#include "io/safetensors.h"
#include "src/jobs.h"
#include "src/shard.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup export --to safetensors IN.h5 -o OUT.safetensors [--overwrite] [--json] [--quiet]\n"
               "Write a checkpoint as one safetensors file (tensors in sorted name order, stored dtypes kept,\n"
               "__metadata__ {\"format\": \"pt\"}) and a Hugging Face config.json in the same folder.\n"
               "Both are written atomically (NAME.tmp, then renamed).\n"
               "  --to safetensors         the output format\n"
               "  -o, --output FILE        the .safetensors file to write\n"
               "  --overwrite              replace an existing FILE and config.json\n"
               "  --json                   print a JSON summary\n"
               "  --quiet                  no progress lines\n"
               "exit: 0 ok, 2 usage, 3 bad input, 4 output exists or unwritable\n");
}

/* Rank 0 writes config.json's text into its temporary. */
static int write_config(const ds_ctx *ctx, const char *path, const ds_config *cfg, ds_dtype dt)
{
    if (ctx->rank != 0) return 0;
    char tmp[4096];
    ds_out_tmpname(path, tmp, sizeof tmp);
    char *text = ds_hf_config_json(cfg, dt);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f || fputs(text, f) < 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    if (f && fclose(f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    free(text);
    return rc;
}

int ds_job_export(ds_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {{"to", 1, 0, 't'},   {"output", 1, 0, 'o'}, {"overwrite", 0, 0, 'w'},
                                         {"json", 0, 0, 'j'}, {"quiet", 0, 0, 'q'},  {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *to = NULL, *out = NULL;
    int overwrite = 0, json = 0, rc = 0, c;
    optind = 1;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 't': to = optarg; break;
        case 'o': out = optarg; break;
        case 'w': overwrite = 1; break;
        case 'j': json = 1; break;
        case 'q': ctx->quiet = 1; break;
        case 'h': usage(ctx); return 0;
        default: rc = ds_err(DS_EXIT_USAGE, "bad option '%s' (see deltasoup export --help)", argv[optind - 1]);
        }
    }
    if (!rc && (!to || strcmp(to, "safetensors") != 0))
        rc = ds_err(DS_EXIT_USAGE, "--to safetensors is required (the only export format)");
    else if (!rc && !out) rc = ds_err(DS_EXIT_USAGE, "-o OUT.safetensors is required");
    else if (!rc && argc - optind != 1) rc = ds_err(DS_EXIT_USAGE, "expected one IN.h5");
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    const char *in = argv[optind];

    ds_model_file *mf;
    if ((rc = ds_model_open(in, ctx->comm, &mf))) return rc;
    const ds_model_meta *meta = ds_model_get_meta(mf);
    char *d = ds_strdup(out);
    size_t cl = strlen(dirname(d)) + 16;
    char *cfgpath = ds_malloc(cl), tmp[4096];
    snprintf(cfgpath, cl, "%s/config.json", d);
    free(d);
    ds_out_tmpname(out, tmp, sizeof tmp);
    if (!(rc = ds_out_begin(ctx, out, overwrite))) rc = ds_out_begin(ctx, cfgpath, overwrite);

    static const char *mk[] = {"format"}, *mv[] = {"pt"};
    ds_st_writer *w = NULL;
    if (!rc) {
        if (ctx->rank == 0) rc = ds_st_writer_open(tmp, 1, meta->n_tensors, meta->tensors, 1, mk, mv, &w);
        if (!(rc = ds_ctx_agree(ctx, rc)))
            rc = ds_ctx_agree(ctx, ctx->rank ? ds_st_writer_open(tmp, 0, meta->n_tensors, meta->tensors, 1, mk,
                                                                 mv, &w) : 0);
        if (rc) {
            ds_st_writer_close(w);
            if (ctx->rank == 0) remove(tmp);
        }
    }
    if (!rc) {
        int n = meta->n_tensors;
        int64_t *sizes = ds_malloc(sizeof *sizes * (size_t)n), biggest = 0, bytes = 0;
        int *owner = ds_malloc(sizeof *owner * (size_t)n), mine = 0, done = 0;
        for (int k = 0; k < n; k++) {
            sizes[k] = (int64_t)ds_tinfo_bytes(&meta->tensors[k]);
            biggest = sizes[k] > biggest ? sizes[k] : biggest;
            bytes += sizes[k];
        }
        ds_shard_by_size(n, sizes, ctx->size, owner);
        for (int k = 0; k < n; k++) mine += owner[k] == ctx->rank;
        void *buf = ds_malloc((size_t)biggest);
        ds_progress pr;
        ds_progress_init(&pr, ctx, "tensors (rank 0)", mine);
        const int every = mine / 10 > 1 ? mine / 10 : 1; /* about ten lines */
        for (int k = 0; k < n && !rc; k++) {
            if (owner[k] != ctx->rank) continue;
            const ds_tinfo *t = &meta->tensors[k];
            rc = ds_model_read_tensor(mf, t->name, t->dtype, buf);
            if (!rc) rc = ds_st_writer_put(w, t->name, buf);
            if (++done % every == 0 || done == mine) ds_progress_step(&pr, done, "%s", t->name);
        }
        free(buf);
        int rc2 = ds_st_writer_close(w);
        rc = ds_out_finish(ctx, out, rc ? rc : rc2);
        /* config.json: the dtype of the embedding stands for the model's. */
        int e = ds_model_find(mf, "model.embed_tokens.weight");
        if (!rc) rc = ds_out_finish(ctx, cfgpath, write_config(ctx, cfgpath, &meta->cfg, meta->tensors[e].dtype));
        if (!rc && ctx->rank == 0) {
            if (json) {
                json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s?}", "input", in, "output", out, "config",
                                      cfgpath, "n_tensors", n, "bytes", (json_int_t)bytes, "content_sha256",
                                      meta->content_sha256[0] ? meta->content_sha256 : NULL);
                char *text = json_dumps(j, JSON_COMPACT);
                ds_printf0(ctx, "%s\n", text);
                free(text);
                json_decref(j);
            } else {
                ds_printf0(ctx, "[export] %s -> %s (+ %s): %d tensors, %lld bytes of data\n", in, out, cfgpath, n,
                           (long long)bytes);
            }
        }
        free(sizes);
        free(owner);
    }
    ds_model_close(mf);
    free(cfgpath);
    return rc;
}
