/* deltasoup compress: base + fine-tuned checkpoint -> BitDelta delta file.
 * Tensors go to ranks by size; each rank reads only its tensors (base and
 * fine-tuned, in their stored dtype), codes them with the sign-pack kernel
 * (on the CPU, a 1-bit tensor in pieces of rows as they are read:
 * compress_stream) and writes its part of the delta collectively created
 * file. */
#include "config.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "io/delta_check.h"
#include "io/dp_record.h"
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_model.h"
#include "io/outfile.h"
#include "src/bitdelta.h"
#include "src/device_ops.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "src/opts.h"
#include "src/tensor_shard.h"

typedef struct {
    const char *base, *ft, *out, *owner, *shapes, *device;
    ds_strlist bits, dense;
    int scale, dry_run, overwrite, json;
    ds_delta_options bd;
    int no_verify;
} opts;

static int check(void *p)
{
    opts *o = p;
    if (o->shapes && !o->dry_run) return ds_err(DS_EXIT_USAGE, "--shapes needs --dry-run (it has no weights)");
    if (o->shapes && (o->base || o->ft)) return ds_err(DS_EXIT_USAGE, "--shapes replaces --base/--finetuned");
    if (!o->shapes && (!o->base || !o->ft)) return ds_err(DS_EXIT_USAGE, "--base and --finetuned are required");
    if (!o->dry_run && !o->out) return ds_err(DS_EXIT_USAGE, "-o D.bd.h5 is required (or --dry-run)");
    /* the owner is stored and printed by aggregate: printable text only */
    for (const unsigned char *c = (const unsigned char *)o->owner; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return ds_err(DS_EXIT_USAGE, "--owner: control character 0x%02x at position %d (printable text only)", *c,
                          (int)(c - (const unsigned char *)o->owner));
    o->bd.mode = (ds_scale_kind)o->scale;
    o->bd.bits_for = o->bits.v;
    o->bd.n_bits_for = o->bits.n;
    o->bd.dense_for = o->dense.v;
    o->bd.n_dense_for = o->dense.n;
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint"),
    DS_OPT_STRING(opts, ft, "finetuned", "F.h5", "fine-tuned checkpoint (same tensors, shapes and dtypes)"),
    DS_OPT_OUTPUT(opts, out, "D", "delta file to write (*.bd.h5)"),
    DS_OPT_CHOICE(opts, scale, "scale", "MODE", ds_scale_kind_names, "tensor",
                  "tensor, row or col: one scale per tensor/row/column"),
    DS_OPT_LIST(opts, bits, "bits-for", "GLOB", "also code matching 2-D tensors with 1 bit (repeatable)"),
    DS_OPT_LIST(opts, dense, "dense-for", "GLOB", "keep matching tensors dense (repeatable, after --bits-for)"),
    DS_OPT_STRING(opts, owner, "owner", "ID", "recorded as the delta's owner"),
    DS_OPT_DEVICE(opts, device, "cpu or cuda: where the sign-pack kernel runs (default cuda when\n"
                                "this build has CUDA and a GPU is found, else cpu; dense deltas\n"
                                "are always computed on the CPU); same output either way"),
    DS_OPT_FLAG(opts, dry_run, "dry-run", "print the per-tensor plan and the ratio, write nothing"),
    DS_OPT_STRING(opts, shapes, "shapes", "NAME", "with --dry-run: shapes of a model family (llama-7b), no files"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_JSON(opts, json, "print the plan / summary as JSON"),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup compress --base B.h5 --finetuned F.h5 -o D.bd.h5 [options]\n"
             "deltasoup compress --dry-run --shapes llama-7b [options]",
    .about = "Compress the fine-tune delta F - B to 1 bit per weight (BitDelta): sign bits and\n"
             "a scale (mean |delta|) for the 2-D matrices of the transformer blocks, a dense\n"
             "delta in the source dtype for the other tensors (docs/bitdelta.md).",
    .opts = options,
    .check = check};

/* ---- the plan, for --dry-run (rank 0 prints) */
static void print_plan(const ds_ctx *ctx, int n, const ds_delta_entry *e, int json)
{
    ds_delta_sizes s;
    double ratio = ds_delta_ratio(n, e, &s);
    int coded = 0;
    for (int i = 0; i < n; i++) coded += e[i].coded;
    if (ctx->rank != 0) return;
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            uint64_t b = ds_delta_entry_bytes(&e[i], NULL);
            json_t *sh = json_array();
            for (int d = 0; d < e[i].t.ndim; d++) json_array_append_new(sh, json_integer(e[i].t.shape[d]));
            json_array_append_new(
                arr, json_pack("{s:s, s:o, s:s, s:s, s:s?, s:I, s:I, s:f}", "name", e[i].t.name, "shape", sh, "dtype",
                               ds_dtype_name(e[i].t.dtype), "coding", e[i].coded ? "bits" : "dense", "scale_mode",
                               e[i].coded ? ds_scale_kind_name(e[i].mode) : NULL, "bytes_full",
                               (json_int_t)ds_tinfo_bytes(&e[i].t), "bytes_stored", (json_int_t)b, "ratio",
                               (double)ds_tinfo_bytes(&e[i].t) / (double)b));
        }
        json_t *r = json_pack("{s:o, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f}", "tensors", arr, "n_tensors", n,
                              "n_coded", coded, "bytes_full", (json_int_t)s.full, "bytes_signs", (json_int_t)s.signs,
                              "bytes_scales", (json_int_t)s.scales, "bytes_dense", (json_int_t)s.dense,
                              "bytes_stored", (json_int_t)(s.signs + s.scales + s.dense), "ratio", ratio);
        char *txt = json_dumps(r, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
        json_decref(r);
        fflush(stdout);
        return;
    }
    for (int i = 0; i < n; i++) {
        char sh[96], how[32];
        uint64_t b = ds_delta_entry_bytes(&e[i], NULL);
        if (e[i].coded) snprintf(how, sizeof how, "1-bit/%s", ds_scale_kind_name(e[i].mode));
        else snprintf(how, sizeof how, "dense");
        printf("  %-48s %-14s %-5s %-12s %12llu B  %6.2fx\n", e[i].t.name, ds_shape_str(&e[i].t, sh, sizeof sh),
               ds_dtype_name(e[i].t.dtype), how, (unsigned long long)b, (double)ds_tinfo_bytes(&e[i].t) / (double)b);
    }
    printf("tensors: %d (%d coded with 1 bit, %d dense)\n", n, coded, n - coded);
    printf("dense delta of every tensor: %llu bytes\n", (unsigned long long)s.full);
    printf("stored: signs %llu + scales %llu + dense %llu = %llu bytes\n", (unsigned long long)s.signs,
           (unsigned long long)s.scales, (unsigned long long)s.dense,
           (unsigned long long)(s.signs + s.scales + s.dense));
    printf("compression ratio: %.4fx\n", ratio);
    fflush(stdout);
}

/* Bytes of each checkpoint per piece of a streamed tensor: small enough
 * that a piece is still in cache when it is coded and hashed (measured on
 * 7B shapes, bench/README.md "Streaming I/O"). For the tests only
 * (tests/bitdelta/pieces.sh), DS_COMPRESS_PIECE_KB sets it in KiB (pieces of
 * a few rows that do not divide the tensors), and 0 turns streaming off:
 * every tensor is read whole, as on a GPU. */
#define PIECE_BYTES ((size_t)2 << 20)

static size_t piece_bytes(void)
{
    const char *v = getenv("DS_COMPRESS_PIECE_KB");
    if (!v || !*v) return PIECE_BYTES;
    long kb = atol(v);
    return kb > 0 ? (size_t)kb << 10 : 0;
}

/* Rows per piece of a streamed tensor. */
static int64_t piece_rows(const ds_delta_entry *e)
{
    size_t row = (size_t)e->cols * ds_dtype_size(e->t.dtype);
    int64_t per = (int64_t)(piece_bytes() / (row ? row : 1));
    if (per < 1) per = 1;
    return per < e->rows ? per : e->rows > 0 ? e->rows : 1;
}

/* Whether tensor e is coded piece by piece as it is read (compress_stream):
 * a 1-bit tensor coded on the CPU, stored in its own dtype in both
 * checkpoints. Else compress_one reads it whole (a GPU codes whole tensors;
 * a dense delta is written whole). */
static int streamed(ds_dev *dev, ds_model_file *bf, ds_model_file *ff, const ds_delta_entry *e)
{
    if (!e->coded || ds_dev_kind(dev) != DS_DEVICE_CPU || e->rows < 1 || !piece_bytes()) return 0;
    const ds_model_meta *bm = ds_model_get_meta(bf), *fm = ds_model_get_meta(ff);
    int ib = ds_model_find(bf, e->t.name), jf = ds_model_find(ff, e->t.name);
    return ib >= 0 && jf >= 0 && bm->tensors[ib].dtype == e->t.dtype && fm->tensors[jf].dtype == e->t.dtype;
}

/* The buffers of compress_local, allocated once for the largest tensor
 * this rank codes and reused for every tensor (no allocation, and no page
 * faults of fresh memory, per tensor): whole tensors for those read whole,
 * two pieces of each checkpoint (used in turn: one is hashed while the next
 * is read) for the streamed ones. */
typedef struct {
    void *wb, *wf, *pb[2], *pf[2];
    uint64_t *bits;
    float *sc;
} buffers;

static void buffers_alloc(buffers *b, const ds_ctx *ctx, ds_dev *dev, ds_model_file *bf, ds_model_file *ff, int n,
                          const ds_delta_entry *e, const ds_tensor_shard *sh)
{
    size_t bytes = 1, piece = 1, words = 1, scales = 1;
    for (int i = 0; i < n; i++) {
        if (sh->owner[i] != ctx->rank) continue;
        size_t x = ds_tinfo_bytes(&e[i].t), w = (size_t)(e[i].rows * e[i].words_per_row);
        if (streamed(dev, bf, ff, &e[i])) {
            size_t p = (size_t)piece_rows(&e[i]) * (size_t)e[i].cols * ds_dtype_size(e[i].t.dtype);
            piece = p > piece ? p : piece;
        } else {
            bytes = x > bytes ? x : bytes;
        }
        if (!e[i].coded) continue;
        words = w > words ? w : words;
        scales = (size_t)e[i].n_scales > scales ? (size_t)e[i].n_scales : scales;
    }
    b->wb = ds_buf_alloc(bytes);
    b->wf = ds_buf_alloc(bytes);
    for (int k = 0; k < 2; k++) {
        b->pb[k] = ds_buf_alloc(piece);
        b->pf[k] = ds_buf_alloc(piece);
    }
    b->bits = ds_malloc(sizeof(uint64_t) * words);
    b->sc = ds_malloc(sizeof(float) * scales);
}

static void buffers_free(buffers *b)
{
    free(b->wb);
    free(b->wf);
    for (int k = 0; k < 2; k++) {
        free(b->pb[k]);
        free(b->pf[k]);
    }
    free(b->bits);
    free(b->sc);
}

/* The error of a non-finite delta at flat index bad of tensor t, whose
 * fine-tuned and base values are vf and vb. */
static int non_finite(const opts *o, const ds_tinfo *t, int64_t bad, float vf, float vb)
{
    return ds_err(DS_EXIT_INPUT, "%s: tensor %s: non-finite delta at element %lld (fine-tuned %g, base %s: %g)", o->ft,
                  t->name, (long long)bad, (double)vf, o->base, (double)vb);
}

/* Read tensor i of both checkpoints (its base digest into dig), code it (or
 * take its dense delta) and write it into d. */
static int compress_one(const opts *o, ds_dev *dev, ds_model_file *bf, ds_model_file *ff, ds_delta_file *d, int i,
                        const ds_delta_entry *e, buffers *b, ds_named_digest *dig)
{
    const ds_tinfo *t = &e->t;
    /* Both tensors are hashed on two threads while a 1-bit tensor is coded
     * (ds_model_read_begin); nothing is written, and no coding error is
     * reported, before both digests have been checked. The base's digest
     * (for base_sha256) is the one computed while reading. */
    ds_model_read_job *jb = NULL, *jf = NULL;
    int rc = ds_model_read_begin(bf, t->name, t->dtype, b->wb, 1, &jb);
    if (!rc) rc = ds_model_read_begin(ff, t->name, t->dtype, b->wf, 0, &jf);
    int64_t bad = -1;
    if (!rc && e->coded) rc = ds_dev_code(dev, e, b->wf, b->wb, b->bits, b->sc, &bad);
    int rb = ds_model_read_end(jb, &dig->digest), rf = ds_model_read_end(jf, NULL);
    /* a read or a digest mismatch names the damaged file first */
    if (rb || rf) return rb ? rb : rf;
    if (rc) return rc;
    snprintf(dig->name, DS_NAME_MAX, "%s", t->name);
    if (!e->coded) bad = ds_delta_dense(t->dtype, b->wf, b->wb, (size_t)ds_tinfo_numel(t), b->wf);
    if (bad >= 0) {
        float vb, vf;
        ds_to_f32(t->dtype, (const char *)b->wb + (size_t)bad * ds_dtype_size(t->dtype), &vb, 1);
        ds_to_f32(t->dtype, (const char *)b->wf + (size_t)bad * ds_dtype_size(t->dtype), &vf, 1);
        return non_finite(o, t, bad, vf, vb);
    }
    if (!e->coded) return ds_delta_write_dense(d, i, b->wf);
    rc = ds_delta_write_signs(d, i, b->bits);
    return rc ? rc : ds_delta_write_scales(d, i, b->sc);
}

/* compress_one of a streamed 1-bit tensor: each piece of rows of both
 * checkpoints is read, handed to the hashing threads and coded (and looked
 * at for a non-finite delta) while it is in cache; the scales come from the
 * row (column) sums at the end: the same bits and scales as coding the
 * whole tensor. Pieces go through two buffers per checkpoint in turn:
 * piece k + 2 is read into piece k's once its hash is done (the return of
 * ds_model_rows_next for piece k + 1). As in compress_one, nothing is
 * written and no non-finite delta is reported before both digests have
 * been checked (every piece is read, also after a non-finite one). */
static int compress_stream(const opts *o, ds_model_file *bf, ds_model_file *ff, ds_delta_file *d, int i,
                           const ds_delta_entry *e, buffers *b, ds_named_digest *dig)
{
    const ds_tinfo *t = &e->t;
    const size_t es = ds_dtype_size(t->dtype);
    const int64_t per = piece_rows(e);
    ds_model_row_reader *jb = NULL, *jf = NULL;
    int rc = ds_model_rows_begin(bf, t->name, 1, &jb);
    if (!rc) rc = ds_model_rows_begin(ff, t->name, 0, &jf);
    ds_delta_coder c;
    ds_delta_coder_begin(&c, e);
    int64_t bad = -1;
    float vb = 0, vf = 0;
    for (int64_t r0 = 0, k = 0; r0 < e->rows && !rc; r0 += per, k++) {
        const int64_t nr = e->rows - r0 < per ? e->rows - r0 : per;
        char *pb = b->pb[k & 1], *pf = b->pf[k & 1];
        rc = ds_model_rows_next(jb, nr, pb);
        if (!rc) rc = ds_model_rows_next(jf, nr, pf);
        if (rc || bad >= 0) continue;
        if ((bad = ds_delta_coder_rows(&c, pf, pb, r0, nr, b->bits)) >= 0) {
            size_t at = (size_t)(bad - r0 * e->cols) * es; /* in this piece */
            ds_to_f32(t->dtype, pb + at, &vb, 1);
            ds_to_f32(t->dtype, pf + at, &vf, 1);
        }
    }
    ds_delta_coder_end(&c, rc || bad >= 0 ? NULL : b->sc);
    int rb = ds_model_rows_end(jb, &dig->digest), rf = ds_model_rows_end(jf, NULL);
    /* a read or a digest mismatch names the damaged file first */
    if (rb || rf) return rb ? rb : rf;
    if (rc) return rc;
    snprintf(dig->name, DS_NAME_MAX, "%s", t->name);
    if (bad >= 0) return non_finite(o, t, bad, vf, vb);
    rc = ds_delta_write_signs(d, i, b->bits);
    return rc ? rc : ds_delta_write_scales(d, i, b->sc);
}

/* Code this rank's tensors into d; digests of the base tensors it read go to bdig. */
static int compress_local(const ds_ctx *ctx, const opts *o, ds_dev *dev, ds_model_file *bf, ds_model_file *ff,
                          ds_delta_file *d, int n, const ds_delta_entry *e, const ds_tensor_shard *sh,
                          ds_named_digest *bdig, int *nbdig)
{
    int done = 0, rc = 0;
    buffers b;
    buffers_alloc(&b, ctx, dev, bf, ff, n, e, sh);
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensor", sh->mine);
    for (int i = 0; i < n && !rc; i++) {
        if (sh->owner[i] != ctx->rank) continue;
        rc = streamed(dev, bf, ff, &e[i]) ? compress_stream(o, bf, ff, d, i, &e[i], &b, &bdig[*nbdig])
                                          : compress_one(o, dev, bf, ff, d, i, &e[i], &b, &bdig[*nbdig]);
        if (rc) break;
        ++*nbdig;
        ds_progress_step(&pr, ++done, "%s", e[i].t.name);
    }
    buffers_free(&b);
    return rc;
}

/* Collective: the base's content hash from the data just read (what the
 * delta is for), checked against the hash the base file records. */
static int base_hash(const ds_ctx *ctx, const opts *o, const ds_model_meta *bm, int nbdig,
                     const ds_named_digest *bdig, char base_hex[65])
{
    ds_digest bd;
    int rc = ds_content_hash(ctx, nbdig, bdig, &bd);
    ds_digest_hex(&bd, base_hex);
    if (!rc && bm->content_sha256[0] && strcmp(bm->content_sha256, base_hex) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: recorded content_sha256 %.16s... but its tensors hash to %.16s... (corrupt or modified file)",
                    o->base, bm->content_sha256, base_hex);
    return ds_ctx_agree(ctx, rc);
}

static void report(const ds_ctx *ctx, const opts *o, ds_dev *dev, int n, const ds_delta_entry *e,
                   const char *content, const char *base_hex, double t0)
{
    ds_delta_sizes s;
    double ratio = ds_delta_ratio(n, e, &s), secs = ds_now() - t0;
    size_t rss = ds_peak_rss(), max_rss = 0;
    MPI_Reduce(&rss, &max_rss, 1, MPI_UNSIGNED_LONG, MPI_MAX, 0, ctx->comm);
    if (ctx->rank != 0) return;
    double gb = 2.0 * (double)s.full / 1e9; /* both checkpoints read */
    if (o->json) {
        json_t *r = json_pack("{s:s, s:s, s:s, s:f, s:I, s:I, s:f, s:f, s:i, s:I, s:s}", "output", o->out,
                              "content_sha256", content, "base_sha256", base_hex, "ratio", ratio, "bytes_full",
                              (json_int_t)s.full, "bytes_stored", (json_int_t)(s.signs + s.scales + s.dense),
                              "seconds", secs, "input_gb_per_s", gb / secs, "ranks", ctx->size,
                              "peak_rss_bytes_max_rank", (json_int_t)max_rss, "device",
                              ds_device_name(ds_dev_kind(dev)));
        char *txt = json_dumps(r, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
        json_decref(r);
    } else {
        char dur[32];
        printf("wrote %s: %d tensors, compression ratio %.4fx (%llu -> %llu bytes)\n", o->out, n, ratio,
               (unsigned long long)s.full, (unsigned long long)(s.signs + s.scales + s.dense));
        printf("content_sha256: %s\nbase_sha256: %s\n", content, base_hex);
        printf("time: %s on %d rank(s), %.2f GB/s read, peak RSS per rank %.1f MB\n",
               ds_fmt_duration(secs, dur, sizeof dur), ctx->size, gb / secs, (double)max_rss / 1e6);
    }
    fflush(stdout);
}

/* Create the delta file, code this rank's tensors (shared out by bytes),
 * record the base's hash, commit, report. */
static int compress_write(const ds_ctx *ctx, const opts *o, ds_dev *dev, ds_model_file *bf, ds_model_file *ff, int n,
                          ds_delta_entry *e)
{
    const ds_model_meta *bm = ds_model_get_meta(bf);
    double t0 = ds_now();
    ds_delta_meta meta = {.cfg = bm->cfg, .n = n, .entries = e};
    snprintf(meta.owner, sizeof meta.owner, "%s", o->owner);
    snprintf(meta.scale_fit, sizeof meta.scale_fit, "mean_abs");
    /* a DP fine-tune's record goes onto the delta (io/dp_record.h) */
    ds_dp_record dp;
    int rc = ds_ctx_agree(ctx, ds_dp_record_read(ds_model_root(ff), &dp));
    if (rc) return rc;
    meta.has_dp = dp.has;
    meta.dp_epsilon = dp.epsilon;
    meta.dp_delta = dp.delta;
    ds_delta_file *d;
    if ((rc = ds_delta_create(o->out, ctx->comm, &meta, o->overwrite, &d))) return rc;
    if (dp.has && dp.accountant[0]) rc = ds_dp_record_write(ds_delta_root(d), &dp, 0);
    ds_tensor_shard sh;
    ds_tensor_shard_plan(&sh, ctx, n, &e[0].t, sizeof *e, DS_WEIGH_BYTES);
    ds_named_digest *bdig = ds_malloc(sizeof(ds_named_digest) * (size_t)(n ? n : 1));
    int nbdig = 0;
    if (!rc) rc = compress_local(ctx, o, dev, bf, ff, d, n, e, &sh, bdig, &nbdig);
    char base_hex[65] = "", content[65] = "";
    if (!(rc = ds_ctx_agree(ctx, rc))) rc = base_hash(ctx, o, bm, nbdig, bdig, base_hex);
    rc = ds_delta_commit(d, rc, base_hex, content);
    ds_tensor_shard_free(&sh);
    free(bdig);
    if (!rc) report(ctx, o, dev, n, e, content, base_hex, t0);
    return rc;
}

/* Open both checkpoints, check them, plan; print the plan or write. */
static int compress_run(const ds_ctx *ctx, const opts *o, ds_dev *dev)
{
    ds_model_file *bf = NULL, *ff = NULL;
    int rc = ds_model_open(o->base, ctx->comm, &bf);
    if (rc) return rc;
    rc = ds_model_open(o->ft, ctx->comm, &ff);
    if (rc) {
        ds_model_close(bf);
        return rc;
    }
    const ds_model_meta *bm = ds_model_get_meta(bf), *fm = ds_model_get_meta(ff);
    int n = bm->n_tensors;
    ds_delta_entry *e = ds_calloc((size_t)(n ? n : 1), sizeof *e);
    rc = ds_delta_check_pair(o->base, bm, o->ft, fm);
    if (!rc) rc = ds_delta_plan(n, bm->tensors, &o->bd, e);
    rc = ds_ctx_agree(ctx, rc);
    if (!rc && o->dry_run) print_plan(ctx, n, e, o->json);
    else if (!rc) rc = compress_write(ctx, o, dev, bf, ff, n, e);
    free(e);
    ds_model_close(ff);
    ds_model_close(bf);
    return rc;
}

static int compress_shapes(const ds_ctx *ctx, const opts *o)
{
    ds_config cfg;
    ds_dtype dt;
    int rc = ds_delta_shapes_config(o->shapes, &cfg, &dt);
    if (rc) return ds_ctx_agree(ctx, rc);
    ds_tinfo *t;
    int n = ds_model_llama_tensors(&cfg, dt, &t);
    ds_delta_entry *e = ds_calloc((size_t)n, sizeof *e);
    rc = ds_ctx_agree(ctx, ds_delta_plan(n, t, &o->bd, e));
    if (!rc) print_plan(ctx, n, e, o->json);
    free(e);
    free(t);
    return rc;
}

int ds_job_compress(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.owner = ""};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    /* The output is neither input (io/outfile.h), even with --overwrite. */
    const char *outs[] = {o.dry_run ? NULL : o.out}, *ins[] = {o.base, o.ft};
    if ((rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 1, ins, 2)))) {
        ds_opts_free(&cmd, &o);
        return rc;
    }
    /* Before any output exists: a device that cannot be used leaves none. */
    ds_dev *dev;
    if (!(rc = ds_dev_open(ctx, o.device, &dev))) rc = o.shapes ? compress_shapes(ctx, &o) : compress_run(ctx, &o, dev);
    ds_dev_close(dev);
    ds_opts_free(&cmd, &o);
    return rc;
}
