/* deltasoup export: an HDF5 model checkpoint to Hugging Face safetensors (+
 * config.json beside it, and the tokenizer.json / tokenizer_config.json that
 * were imported, byte for byte). The file layout follows from the tensor list alone,
 * so rank 0 writes the header and sizes OUT.tmp, then every rank pwrites the
 * tensors it owns (shared out by bytes) at their offsets, one tensor in
 * memory at a time. */
#include "config.h"
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5.h"
#include "io/h5_model.h"
#include "io/hf_config.h"
#include "io/outfile.h"
#include "io/safetensors.h"
#include "src/jobs.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/tensor_shard.h"

typedef struct {
    const char *out;
    int to, overwrite, json;
    ds_strlist in;
    int no_verify;
} opts;

static const char *const formats[] = {"safetensors", NULL};

static int check(void *p)
{
    opts *o = p;
    if (o->to < 0) return ds_err(DS_EXIT_USAGE, "--to safetensors is required (the only export format)");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o OUT.safetensors is required");
    if (o->in.n != 1) return ds_err(DS_EXIT_USAGE, "expected one IN.h5");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_CHOICE(opts, to, "to", "safetensors", formats, NULL, "the output format"),
    DS_OPT_OUTPUT(opts, out, "FILE", "the .safetensors file to write"),
    DS_OPT_OVERWRITE_AS(opts, overwrite, "replace an existing output and its config.json (and tokenizer files)"),
    DS_OPT_JSON(opts, json, "print a JSON summary"),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup export --to safetensors IN.h5 -o OUT.safetensors [--overwrite] [--json] [--quiet]",
    .about = "Write a checkpoint as one safetensors file (tensors in sorted name order, stored dtypes kept,\n"
             "__metadata__ {\"format\": \"pt\"}) and a Hugging Face config.json in the same folder; a\n"
             "checkpoint imported with a Hugging Face tokenizer also gets its tokenizer.json and\n"
             "tokenizer_config.json back, byte-identical (with -o DIR/model.safetensors, DIR is a folder\n"
             "Hugging Face loads). The files are written into DIR/.NAME.export.tmp/ and renamed into\n"
             "place together, config.json last; a rerun finishes or discards what a killed export left\n"
             "(docs/robustness.md \"export: the set of files\"). --overwrite replaces an existing set.",
    .opts = options,
    .epilog = "exit: 0 ok, 2 usage, 3 bad input, 4 output exists or unwritable",
    .pos_off = offsetof(opts, in),
    .pos_max = -1,
    .pos_name = "IN.h5",
    .check = check};

/* Collective: rank 0 creates OUT.tmp (header, size), then the others open it. */
static int writer_open(const ds_ctx *ctx, const char *tmp, const ds_model_meta *meta, ds_st_writer **w)
{
    static const char *mk[] = {"format"}, *mv[] = {"pt"};
    int rc = 0;
    if (ctx->rank == 0) rc = ds_st_writer_open(tmp, 1, meta->n_tensors, meta->tensors, 1, mk, mv, w);
    if (!(rc = ds_ctx_agree(ctx, rc)))
        rc = ds_ctx_agree(ctx, ctx->rank ? ds_st_writer_open(tmp, 0, meta->n_tensors, meta->tensors, 1, mk, mv, w) : 0);
    if (rc) {
        ds_st_writer_close(*w);
        if (ctx->rank == 0) remove(tmp);
    }
    return rc;
}

/* A piece of a tensor read (ds_model_piece_fn): written at once, while it
 * is digested. */
typedef struct {
    ds_st_writer *w;
    const char *name;
    const char *buf;
} piece_out;

static int put_piece(void *arg, size_t off, size_t n)
{
    const piece_out *p = arg;
    return ds_st_writer_put_part(p->w, p->name, off, p->buf + off, n);
}

/* This rank's tensors into the writer; about ten progress lines. */
static int export_local(const ds_ctx *ctx, ds_model_file *mf, const ds_tensor_shard *sh, ds_st_writer *w)
{
    const ds_model_meta *meta = ds_model_get_meta(mf);
    void *buf = ds_buf_alloc((size_t)sh->biggest);
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensors (rank 0)", sh->mine);
    const int every = sh->mine / 10 > 1 ? sh->mine / 10 : 1;
    int done = 0, rc = 0;
    for (int k = 0; k < meta->n_tensors && !rc; k++) {
        if (sh->owner[k] != ctx->rank) continue;
        const ds_tinfo *t = &meta->tensors[k];
        piece_out p = {w, t->name, buf};
        rc = ds_model_read_tensor_pieces(mf, t->name, t->dtype, buf, put_piece, &p);
        if (++done % every == 0 || done == sh->mine) ds_progress_step(&pr, done, "%s", t->name);
    }
    free(buf);
    return rc;
}

static void report(const ds_ctx *ctx, const opts *o, const char *cfgpath, const ds_model_meta *meta, int64_t bytes)
{
    if (ctx->rank != 0) return;
    const char *in = o->in.v[0];
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s?}", "input", in, "output", o->out, "config", cfgpath,
                              "n_tensors", meta->n_tensors, "bytes", (json_int_t)bytes, "content_sha256",
                              meta->content_sha256[0] ? meta->content_sha256 : NULL);
        if (!ds_verify_enabled()) json_object_set_new(j, "verify", json_false()); /* --no-verify */
        char *text = json_dumps(j, JSON_COMPACT);
        ds_printf0(ctx, "%s\n", text);
        free(text);
        json_decref(j);
    } else {
        ds_printf0(ctx, "[export] %s -> %s (+ %s): %d tensors, %lld bytes of data\n", in, o->out, cfgpath,
                   meta->n_tensors, (long long)bytes);
    }
}

/* The tokenizer files beside OUT (names[i] for tf's json and config). */
static const char *const tok_names[2] = {"tokenizer.json", "tokenizer_config.json"};

/* Rank 0: config.json and the tokenizer files into the staging folder. */
static int small_files_stage(const opts *o, const char *cfgpath, const ds_model_meta *meta, ds_dtype dt,
                             const ds_tok_files *tf)
{
    char *p = ds_hf_stage_file(o->out, "config.json");
    int rc = ds_hf_config_write(cfgpath, p, &meta->cfg, dt);
    free(p);
    for (int i = 0; i < 2 && !rc && tf->json; i++) {
        const char *data = i ? tf->config : tf->json;
        if (!data) continue;
        char *path = ds_hf_file_beside(o->out, tok_names[i]);
        p = ds_hf_stage_file(o->out, tok_names[i]);
        rc = ds_hf_bytes_write(path, p, data, i ? tf->config_len : tf->json_len);
        free(p);
        free(path);
    }
    return rc;
}

/* Rank 0: the set's base names in rename order (tokenizer files, the
 * tensors, config.json last), then the commit (io/hf_config.h). */
static int stage_commit(const opts *o, const ds_model_meta *meta, const ds_tok_files *tf)
{
    char *b = ds_strdup(o->out);
    const char *names[4];
    int n = 0;
    if (tf->json) names[n++] = tok_names[0];
    if (tf->json && tf->config) names[n++] = tok_names[1];
    names[n++] = basename(b);
    names[n++] = "config.json";
    int rc = ds_hf_stage_commit(o->out, names, n, meta->content_sha256);
    free(b);
    return rc;
}

/* The checks before anything is written: one output-path check, then what
 * an interrupted export left (finished or discarded: a rerun of the same
 * input may replace the set it finished), then each output's own rule. */
static int export_begin(const ds_ctx *ctx, const opts *o, const ds_model_meta *meta, const char *cfgpath,
                        const ds_tok_files *tf)
{
    char *tj = ds_hf_file_beside(o->out, tok_names[0]), *tc = ds_hf_file_beside(o->out, tok_names[1]);
    const char *outs[] = {o->out, cfgpath, tf->json ? tj : NULL, tf->config ? tc : NULL};
    int rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 4, (const char *const *)o->in.v, o->in.n));
    int same = 0;
    if (!rc) rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_hf_stage_recover(o->out, meta->content_sha256, &same) : 0);
    MPI_Bcast(&same, 1, MPI_INT, 0, ctx->comm);
    const int ow = o->overwrite || same;
    for (int i = 0; i < 4 && !rc; i++)
        if (outs[i]) rc = ds_out_begin(ctx, outs[i], ow);
    if (!rc) rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_hf_stage_create(o->out) : 0);
    free(tj);
    free(tc);
    return rc;
}

/* Every file staged in DIR/.NAME.export.tmp/ (the tensors by every rank,
 * config.json and the tokenizer files by rank 0), then rank 0 commits the
 * set (tf->json NULL: no tokenizer files). */
static int export_run(const ds_ctx *ctx, const opts *o, ds_model_file *mf, const char *cfgpath, const ds_tok_files *tf)
{
    const ds_model_meta *meta = ds_model_get_meta(mf);
    int rc = export_begin(ctx, o, meta, cfgpath, tf);
    if (rc) return rc; /* nothing staged (a marker that could not be finished stays) */
    char *b = ds_strdup(o->out), *staged = ds_hf_stage_file(o->out, basename(b));
    ds_st_writer *w = NULL;
    rc = writer_open(ctx, staged, meta, &w);
    free(staged);
    free(b);
    if (rc) {
        if (ctx->rank == 0) ds_hf_stage_discard(o->out);
        return rc;
    }
    ds_tensor_shard sh;
    ds_tensor_shard_plan(&sh, ctx, meta->n_tensors, meta->tensors, sizeof *meta->tensors, DS_WEIGH_BYTES);
    rc = export_local(ctx, mf, &sh, w);
    int rc2 = ds_st_writer_close(w);
    rc = ds_ctx_agree(ctx, rc ? rc : rc2);
    if (ctx->rank == 0) ds_hf_test_fail_at("export:tensors");
    /* config.json: the dtype of the embedding stands for the model's. */
    const ds_dtype dt = meta->tensors[ds_model_find(mf, "model.embed_tokens.weight")].dtype;
    if (!rc) rc = ds_ctx_agree(ctx, ctx->rank == 0 ? small_files_stage(o, cfgpath, meta, dt, tf) : 0);
    if (rc && ctx->rank == 0) ds_hf_stage_discard(o->out);
    if (!rc) rc = ds_ctx_agree(ctx, ctx->rank == 0 ? stage_commit(o, meta, tf) : 0);
    if (!rc) report(ctx, o, cfgpath, meta, sh.total);
    ds_tensor_shard_free(&sh);
    return rc;
}

int ds_job_export(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.to = -1};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    ds_model_file *mf;
    if (!(rc = ds_model_open(o.in.v[0], ctx->comm, &mf))) {
        char *cfgpath = ds_hf_config_beside(o.out);
        ds_tok_files tf = {0};
        if (ds_model_get_meta(mf)->tokenizer_hf) rc = ds_ctx_agree(ctx, ds_model_read_tokenizer_files(mf, &tf));
        if (!rc) rc = export_run(ctx, &o, mf, cfgpath, &tf);
        ds_tok_files_free(&tf);
        free(cfgpath);
        ds_model_close(mf);
    }
    ds_opts_free(&cmd, &o);
    return rc;
}
