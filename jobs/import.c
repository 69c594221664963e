/* deltasoup import: a llama2.c checkpoint, Hugging Face safetensors or a
 * Hugging Face model folder into an HDF5 model checkpoint. Tensors are shared out by size (elements); each
 * rank reads (pread / mmap) and writes only its own, one tensor at a time
 * (the readers: io/model_source.h). */
#include "config.h"
#include <jansson.h>
#include <stdlib.h>
#include "io/h5.h"
#include "io/h5_model.h"
#include "io/model_source.h"
#include "io/outfile.h"
#include "io/tokenizer.h"
#include "src/jobs.h"
#include "src/opts.h"
#include "src/tensor_shard.h"

static const char *const from_names[] = {"llama2c", "safetensors", "hf", NULL}; /* ds_source_kind order */
static const char *const dtype_names[] = {"f32", "f16", "bf16", NULL};
static const ds_dtype dtype_of[] = {DS_DTYPE_F32, DS_DTYPE_F16, DS_DTYPE_BF16};

typedef struct {
    const char *out, *tokpath, *cfgpath;
    int from, dtype, allow, overwrite, json;
    ds_strlist in;
} opts;

static int check(void *p)
{
    opts *o = p;
    if (o->from < 0) return ds_err(DS_EXIT_USAGE, "--from llama2c, safetensors or hf is required");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o OUT.h5 is required");
    if (o->in.n < 1) return ds_err(DS_EXIT_USAGE, "no input file given");
    if (o->from == DS_SOURCE_LLAMA2C && o->in.n != 1) return ds_err(DS_EXIT_USAGE, "--from llama2c takes one MODEL.bin");
    if (o->from == DS_SOURCE_LLAMA2C && o->cfgpath) return ds_err(DS_EXIT_USAGE, "--config is for --from safetensors");
    if (o->from == DS_SOURCE_HF && o->in.n != 1) return ds_err(DS_EXIT_USAGE, "--from hf takes one model folder");
    if (o->from == DS_SOURCE_HF && (o->cfgpath || o->tokpath))
        return ds_err(DS_EXIT_USAGE, "--from hf reads the folder's config.json and tokenizer.json (no --config, --tokenizer)");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_CHOICE(opts, from, "from", "KIND", from_names, NULL,
                  "llama2c (legacy llama2.c .bin: q/k rows go from interleaved RoPE\n"
                  "pairs to rotate-half order), safetensors (one file, the shards,\n"
                  "or model.safetensors.index.json) or hf (a Hugging Face model folder:\n"
                  "config.json, the safetensors, tokenizer.json, tokenizer_config.json)"),
    DS_OPT_OUTPUT(opts, out, "OUT.h5", "the checkpoint to write (atomically: OUT.h5.tmp, then renamed)"),
    DS_OPT_STRING(opts, tokpath, "tokenizer", "FILE",
                  "tokenizer to store under /tokenizer: a llama2.c TOK.bin or a Hugging Face\n"
                  "tokenizer.json (with the tokenizer_config.json beside it)"),
    DS_OPT_STRING(opts, cfgpath, "config", "FILE", "Hugging Face config.json (default: config.json beside the first file)"),
    DS_OPT_CHOICE(opts, dtype, "dtype", "T", dtype_names, NULL,
                  "f32, f16 or bf16 (default: llama2c f32; safetensors: as stored)"),
    DS_OPT_FLAG(opts, allow, "allow-nonfinite", "import NaN/Inf weights instead of refusing them"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_JSON(opts, json, "print a JSON summary (output, n_tensors, n_params, content_sha256)"),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup import --from llama2c MODEL.bin [--tokenizer TOK.bin] -o OUT.h5 [options]\n"
             "deltasoup import --from safetensors FILE... [--config config.json] [--tokenizer tokenizer.json] -o OUT.h5 [options]\n"
             "deltasoup import --from hf DIR -o OUT.h5 [options]",
    .about = "Convert a model into a deltasoup HDF5 checkpoint (Hugging Face Llama names and layout).",
    .opts = options,
    .epilog = "exit: 0 ok, 2 usage, 3 bad input, 4 output exists or unwritable",
    .pos_off = offsetof(opts, in),
    .pos_min = 0,
    .pos_max = -1,
    .pos_name = "input files",
    .check = check};

/* This rank's tensors: read and write each; about ten progress lines. */
static int import_local(const ds_ctx *ctx, const opts *o, ds_source *src, ds_model_file *mf, const ds_tensor_shard *sh)
{
    float *buf = src->kind == DS_SOURCE_LLAMA2C ? ds_buf_alloc(sizeof(float) * (size_t)sh->biggest) : NULL;
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensors (rank 0)", sh->mine);
    const int every = sh->mine / 10 > 1 ? sh->mine / 10 : 1;
    int done = 0, rc = 0;
    for (int k = 0; k < src->n && !rc; k++) {
        if (sh->owner[k] != ctx->rank) continue;
        rc = ds_source_copy(src, k, mf, buf, o->allow);
        if (++done % every == 0 || done == sh->mine) ds_progress_step(&pr, done, "%s", src->tensors[k].name);
    }
    free(buf);
    return rc;
}

static void report(const ds_ctx *ctx, const opts *o, int n, int64_t params, const char *hex)
{
    if (o->json && ctx->rank == 0) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s}", "input", o->in.v[0], "from", from_names[o->from],
                              "output", o->out, "n_tensors", n, "n_params", (json_int_t)params, "content_sha256", hex);
        char *text = json_dumps(j, JSON_COMPACT);
        ds_printf0(ctx, "%s\n", text);
        free(text);
        json_decref(j);
    } else if (!o->json)
        ds_printf0(ctx, "[import] %s -> %s: %d tensors, %lld parameters, content sha256 %s\n", o->in.v[0], o->out, n,
                   (long long)params, hex);
}

/* Create the output, copy this rank's tensors, hash, commit, report. */
static int import_write(const ds_ctx *ctx, const opts *o, ds_source *src, const ds_tokenizer *tok)
{
    ds_model_file *mf = NULL;
    int rc = ds_model_create(o->out, ctx->comm, &src->cfg, src->n, src->tensors, tok, o->overwrite, &mf);
    if (rc) return rc;
    ds_tensor_shard sh;
    ds_tensor_shard_plan(&sh, ctx, src->n, src->tensors, sizeof *src->tensors, DS_WEIGH_ELEMENTS);
    rc = import_local(ctx, o, src, mf, &sh);
    /* All ranks learn whether everyone succeeded; the failing rank's
     * message is printed once, by commit. */
    int any = ds_ctx_any_failed(ctx, rc);
    char hex[65] = "";
    if (!any) rc = ds_model_content_hash(mf, hex);
    rc = ds_model_commit(mf, rc, any || rc ? NULL : hex);
    if (!rc) report(ctx, o, src->n, sh.total, hex);
    ds_tensor_shard_free(&sh);
    return rc;
}

int ds_job_import(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.from = -1, .dtype = -1};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    const int want = o.dtype >= 0 ? (int)dtype_of[o.dtype] : -1;
    /* Every rank opens the input (headers only) and checks it. */
    ds_source src;
    rc = ds_source_open(&src, (ds_source_kind)o.from, o.in.n, o.in.v, o.cfgpath);
    ds_tokenizer tok = {0};
    int have_tok = 0;
    if (!rc) rc = ds_source_tokenizer(&src, o.tokpath, &tok, &have_tok);
    if (!rc) rc = ds_source_tensors(&src, ctx, want);
    if (!rc) { /* the output may be none of the files read, --overwrite or not */
        const char **files;
        const int n = ds_source_files(&src, o.in.n, (const char *const *)o.in.v, o.tokpath, &files);
        rc = ds_out_check_paths((const char *const[]){o.out}, 1, files, n);
        free(files);
    }
    if (!(rc = ds_ctx_agree(ctx, rc))) rc = import_write(ctx, &o, &src, have_tok ? &tok : NULL);
    if (have_tok) ds_tokenizer_free(&tok);
    ds_source_close(&src);
    ds_opts_free(&cmd, &o);
    return rc;
}
