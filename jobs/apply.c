/* deltasoup apply: base checkpoint + delta file -> checkpoint W_b + g(2b - 1)
 * (plus the dense deltas), in the base's dtypes. Tensors go to ranks by
 * size; each rank reads its base tensors and their delta parts and writes
 * them into the collectively created output. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "io/delta_apply.h"
#include "io/delta_check.h"
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_model.h"
#include "io/outfile.h"
#include "src/bitdelta.h"
#include "src/device_ops.h"
#include "src/jobs.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/tensor_shard.h"

typedef struct {
    const char *base, *delta, *out, *device;
    int force, overwrite;
    int no_verify;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->base || !o->delta || !o->out) return ds_err(DS_EXIT_USAGE, "--base, --delta and -o are required");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint"),
    DS_OPT_STRING(opts, delta, "delta", "D.bd.h5", "delta file from compress"),
    DS_OPT_OUTPUT(opts, out, "M", "checkpoint to write"),
    DS_OPT_FORCE(opts, force, "apply a delta made for another base (a warning instead of an error)"),
    DS_OPT_DEVICE(opts, device, "cpu or cuda: where W_b + g(2b - 1) is computed (default cuda when\n"
                                "this build has CUDA and a GPU is found, else cpu; dense deltas are\n"
                                "always added on the CPU); same output either way"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup apply --base B.h5 --delta D.bd.h5 -o M.h5 [options]",
    .about = "Write the model W_b + g(2b - 1) (and the dense deltas) as a checkpoint in the base's\n"
             "dtypes. The delta must have been made for this base (its recorded base_sha256).",
    .opts = options,
    .check = check};

/* ds_dev_apply as a ds_delta_apply_fn: the coded part runs on the --device. */
static int dev_apply(void *dev, ds_dtype dt, void *w, const ds_delta_entry *e, const uint64_t *bits, const float *sc)
{
    return ds_dev_apply(dev, dt, w, e, bits, sc);
}

static int apply_local(const ds_ctx *ctx, const opts *o, ds_dev *dev, ds_model_file *bf, ds_delta_file *d,
                       ds_model_file *of)
{
    const ds_model_meta *bm = ds_model_get_meta(bf);
    int n = bm->n_tensors, rc = 0, done = 0;
    ds_tensor_shard sh;
    ds_tensor_shard_plan(&sh, ctx, n, bm->tensors, sizeof *bm->tensors, DS_WEIGH_BYTES);
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensor", sh.mine);
    /* Two buffers for this rank's largest tensor, reused for every tensor,
     * in turn: while tensor i's base is hashed (ds_model_read_begin), the
     * previous tensor's result is written from the other buffer. A result
     * is written only after its base was verified, and the output is
     * staged (NAME.tmp): a later failure leaves nothing. */
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        if (sh.owner[i] == ctx->rank && ds_tinfo_bytes(&bm->tensors[i]) > cap) cap = ds_tinfo_bytes(&bm->tensors[i]);
    void *bufs[2] = {ds_buf_alloc(cap), ds_buf_alloc(cap)};
    int prev = -1, turn = 0; /* the tensor whose result waits in bufs[!turn] */
    for (int i = 0; i < n && !rc; i++) {
        if (sh.owner[i] != ctx->rank) continue;
        const ds_tinfo *t = &bm->tensors[i];
        void *buf = bufs[turn];
        ds_model_read_job *job = NULL;
        rc = ds_model_read_begin(bf, t->name, t->dtype, buf, 0, &job);
        if (!rc && prev >= 0) rc = ds_model_write_tensor(of, bm->tensors[prev].name, bm->tensors[prev].dtype, bufs[!turn]);
        const int rr = ds_model_read_end(job, NULL);
        if (!rc) rc = rr;
        int k = ds_delta_find(d, t->name);
        if (!rc && k >= 0) rc = ds_delta_add_entry(d, k, t->dtype, buf, dev_apply, dev);
        int64_t bad = rc ? -1 : ds_find_nonfinite(t->dtype, buf, (size_t)ds_tinfo_numel(t));
        if (bad >= 0)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: base + delta is not finite at element %lld (base %s)", o->delta,
                        t->name, (long long)bad, o->base);
        prev = i;
        turn = !turn;
        ds_progress_step(&pr, ++done, "%s", t->name);
    }
    if (!rc && prev >= 0) rc = ds_model_write_tensor(of, bm->tensors[prev].name, bm->tensors[prev].dtype, bufs[!turn]);
    free(bufs[0]);
    free(bufs[1]);
    ds_tensor_shard_free(&sh);
    return rc;
}

static int apply_run(const ds_ctx *ctx, const opts *o, ds_dev *dev)
{
    ds_model_file *bf = NULL, *of = NULL;
    ds_delta_file *d = NULL;
    ds_tokenizer tok;
    int have_tok = 0;
    int rc = ds_model_open(o->base, ctx->comm, &bf);
    if (rc) return rc;
    if ((rc = ds_delta_open(o->delta, ctx->comm, &d))) goto out;
    const ds_model_meta *bm = ds_model_get_meta(bf);
    rc = ds_delta_check_fit(o->delta, ds_delta_get_meta(d), o->base, bf, o->force, ctx->rank);
    if (!rc && bm->has_tokenizer) {
        rc = ds_model_read_tokenizer(bf, &tok);
        have_tok = rc == 0;
    }
    if ((rc = ds_ctx_agree(ctx, rc))) goto out;
    double t0 = ds_now();
    rc = ds_model_create(o->out, ctx->comm, &bm->cfg, bm->n_tensors, bm->tensors, have_tok ? &tok : NULL,
                         o->overwrite, &of);
    if (rc) goto out;
    rc = apply_local(ctx, o, dev, bf, d, of);
    char hex[65] = "";
    if (!(rc = ds_ctx_agree(ctx, rc))) rc = ds_model_content_hash(of, hex);
    if (rc) {
        ds_model_discard(of);
        goto out;
    }
    rc = ds_model_commit(of, 0, hex);
    if (!rc && ctx->rank == 0) {
        char dur[32];
        printf("wrote %s: base %s + delta %s (%d tensors) in %s on %d rank(s)\ncontent_sha256: %s\n", o->out,
               o->base, o->delta, bm->n_tensors, ds_fmt_duration(ds_now() - t0, dur, sizeof dur), ctx->size, hex);
        fflush(stdout);
    }
out:
    if (have_tok) ds_tokenizer_free(&tok);
    ds_delta_close(d);
    ds_model_close(bf);
    return rc;
}

int ds_job_apply(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    /* The output is neither input (io/outfile.h), even with --overwrite. */
    const char *outs[] = {o.out}, *ins[] = {o.base, o.delta};
    if ((rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 1, ins, 2)))) return rc;
    /* Before any output exists: a device that cannot be used leaves none. */
    ds_dev *dev;
    if (!(rc = ds_dev_open(ctx, o.device, &dev))) rc = apply_run(ctx, &o, dev);
    ds_dev_close(dev);
    return rc;
}
