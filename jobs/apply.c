/* deltasoup apply: base checkpoint + delta file -> checkpoint W_b + g(2b - 1)
 * (plus the dense deltas), in the base's dtypes. Tensors go to ranks by
 * size; each rank reads its base tensors and their delta parts and writes
 * them into the collectively created output. */
#include "config.h"
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "io/delta_apply.h"
#include "io/h5_delta.h"
#include "io/h5_model.h"
#include "src/bitdelta.h"
#include "src/device_ops.h"
#include "src/jobs.h"
#include "src/shard.h"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx, "usage: deltasoup apply --base B.h5 --delta D.bd.h5 -o M.h5 [options]\n"
                    "Write the model W_b + g(2b - 1) (and the dense deltas) as a checkpoint in the base's\n"
                    "dtypes. The delta must have been made for this base (its recorded base_sha256).\n\n"
                    "  --base B.h5      base checkpoint\n"
                    "  --delta D.bd.h5  delta file from compress\n"
                    "  -o, --output M   checkpoint to write\n"
                    "  --force          apply a delta made for another base (a warning instead of an error)\n"
                    "  --device DEV     cpu or cuda: where W_b + g(2b - 1) is computed (default cuda when\n"
                    "                   this build has CUDA and a GPU is found, else cpu; dense deltas are\n"
                    "                   always added on the CPU); same output either way\n"
                    "  --overwrite      replace an existing output\n"
                    "  --quiet          no progress lines\n"
                    "  -h, --help       this help\n");
}

typedef struct {
    const char *base, *delta, *out, *device;
    int force, overwrite;
} opts;

static int parse(ds_ctx *ctx, int argc, char **argv, opts *o)
{
    enum { O_BASE = 256, O_DELTA, O_FORCE, O_OVER, O_QUIET, O_DEVICE };
    static const struct option lo[] = {{"base", required_argument, 0, O_BASE}, {"delta", required_argument, 0, O_DELTA},
                                       {"output", required_argument, 0, 'o'},  {"force", no_argument, 0, O_FORCE},
                                       {"overwrite", no_argument, 0, O_OVER},  {"quiet", no_argument, 0, O_QUIET},
                                       {"device", required_argument, 0, O_DEVICE},
                                       {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case O_BASE: o->base = optarg; break;
        case O_DELTA: o->delta = optarg; break;
        case 'o': o->out = optarg; break;
        case O_FORCE: o->force = 1; break;
        case O_DEVICE: o->device = optarg; break;
        case O_OVER: o->overwrite = 1; break;
        case O_QUIET: ctx->quiet = 1; break;
        case 'h': return -1;
        case ':': return ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]);
        default: return ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) return ds_err(DS_EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->base || !o->delta || !o->out) return ds_err(DS_EXIT_USAGE, "--base, --delta and -o are required");
    return 0;
}

/* The delta fits the base: hash (unless --force), config, every delta tensor
 * present with the same shape. */
static int check_fit(const ds_ctx *ctx, const opts *o, const ds_model_meta *bm, ds_model_file *bf,
                     const ds_delta_meta *dm)
{
    int rc = ds_delta_check_base(o->delta, dm->base_sha256, o->base, bm->content_sha256, o->force, ctx->rank);
    if (rc) return rc;
    if ((rc = ds_delta_check_config(o->delta, &dm->cfg, o->base, &bm->cfg))) return rc;
    for (int k = 0; k < dm->n; k++) {
        const ds_tinfo *t = &dm->entries[k].t;
        int i = ds_model_find(bf, t->name);
        char s1[96], s2[96];
        if (i < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is not in the base %s", o->delta, t->name, o->base);
        const ds_tinfo *b = &bm->tensors[i];
        if (!ds_tinfo_same_shape(b, t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s has %s", o->delta, t->name,
                          ds_shape_str(t, s1, sizeof s1), o->base, ds_shape_str(b, s2, sizeof s2));
    }
    return 0;
}

/* ds_dev_apply as a ds_delta_apply_fn: the coded part runs on the --device. */
static int dev_apply(void *dev, ds_dtype dt, void *w, const ds_delta_entry *e, const uint64_t *bits, const float *sc)
{
    return ds_dev_apply(dev, dt, w, e, bits, sc);
}

static int apply_local(const ds_ctx *ctx, const opts *o, ds_dev *dev, ds_model_file *bf, ds_delta_file *d,
                       ds_model_file *of)
{
    const ds_model_meta *bm = ds_model_get_meta(bf);
    int n = bm->n_tensors, rc = 0, mine = 0, done = 0;
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int *owner = ds_malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) sizes[i] = (int64_t)ds_tinfo_bytes(&bm->tensors[i]);
    ds_shard_by_size(n, sizes, ctx->size, owner);
    for (int i = 0; i < n; i++) mine += owner[i] == ctx->rank;
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensor", mine);
    void *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (owner[i] != ctx->rank) continue;
        const ds_tinfo *t = &bm->tensors[i];
        size_t bytes = ds_tinfo_bytes(t);
        if (bytes > cap) {
            free(buf);
            buf = ds_malloc(cap = bytes);
        }
        rc = ds_model_read_tensor(bf, t->name, t->dtype, buf);
        int k = ds_delta_find(d, t->name);
        if (!rc && k >= 0) rc = ds_delta_add_entry(d, k, t->dtype, buf, dev_apply, dev);
        int64_t bad = rc ? -1 : ds_find_nonfinite(t->dtype, buf, (size_t)ds_tinfo_numel(t));
        if (bad >= 0)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: base + delta is not finite at element %lld (base %s)", o->delta,
                        t->name, (long long)bad, o->base);
        if (!rc) rc = ds_model_write_tensor(of, t->name, t->dtype, buf);
        ds_progress_step(&pr, ++done, "%s", t->name);
    }
    free(buf);
    free(sizes);
    free(owner);
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
    rc = check_fit(ctx, o, bm, bf, ds_delta_get_meta(d));
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
    opts o;
    int rc = parse(ctx, argc, argv, &o);
    if (rc < 0) {
        usage(ctx);
        return 0;
    }
    if (rc) return ds_ctx_agree(ctx, rc);
    /* Before any output exists: a device that cannot be used leaves none. */
    ds_dev *dev;
    if (!(rc = ds_dev_open(ctx, o.device, &dev))) rc = apply_run(ctx, &o, dev);
    ds_dev_close(dev);
    return rc;
}
