/* deltasoup poison: Byzantine deltas made from honest ones, to test robust
 * aggregation (docs/poison.md). Orchestration only: the attack formulas are
 * src/poison.c, reading a delta's values io/delta_values.c, coding goes
 * through src/bitdelta.h.
 *
 * Flow: every rank opens every honest delta collectively for its layout
 * (errors print once) and checks it against the first; tensors are spread
 * over the ranks by size; the owner of a tensor reads all n honest values of
 * it (one tensor in memory at a time), computes the K attack tensors and
 * writes them into the K output files (created collectively, committed
 * collectively, each staged as NAME.tmp). Every value depends on the tensor,
 * the coordinate and the options only (the gaussian noise is a counter-based
 * hash of (seed, k, tensor, coordinate)), so the outputs' content hashes do
 * not depend on the number of ranks. */
#include "config.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/delta_values.h"
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "io/outfile.h"
#include "src/bitdelta.h"
#include "src/checkpoint.h"
#include "src/jobs.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/poison.h"
#include "src/tensor_shard.h"

typedef struct {
    int a, count;
    double strength;
    int strength_set; /* times --strength was given */
    int64_t seed;
    const char *dir;
    int overwrite, json, n_in;
    const char **in;
    ds_strlist honest;
    int no_verify;
} opts;

static int check(void *p)
{
    opts *o = p;
    if (o->a < 0) return ds_err(DS_EXIT_USAGE, "--attack is required (see --help)");
    if (o->count < 0) return ds_err(DS_EXIT_USAGE, "--count K is required (see --help)");
    if (!o->dir) return ds_err(DS_EXIT_USAGE, "-o DIR is required");
    if (o->strength_set && !isfinite(o->strength))
        return ds_err(DS_EXIT_USAGE, "--strength %g: must be a finite number", o->strength);
    if (o->a == DS_ATTACK_GAUSSIAN && o->strength < 0)
        return ds_err(DS_EXIT_USAGE, "--strength %g: gaussian needs a scale >= 0", o->strength);
    if (!o->strength_set) o->strength = ds_attack_default_strength((ds_attack)o->a);
    o->in = o->honest.v;
    o->n_in = o->honest.n;
    if (o->n_in == 0) return ds_err(DS_EXIT_USAGE, "no honest deltas (see --help)");
    if (o->a == DS_ATTACK_ALIE && o->n_in < 2)
        return ds_err(DS_EXIT_USAGE, "alie needs at least 2 honest deltas (a per-coordinate std), got %d", o->n_in);
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_CHOICE(opts, a, "attack", "A", ds_attack_names, NULL, "sign-flip | scale | gaussian | alie | ipm"),
    DS_OPT_INT(opts, count, "count", "K", 1, 1 << 20, NULL, "number of poisoned deltas to write (K >= 1)"),
    {"strength", 0, DS_OPT_T_DOUBLE, offsetof(opts, strength), "S", "the attack's parameter (see above; a finite number)",
     NULL, -INFINITY, INFINITY, NULL, DS_OPT_GIVEN(opts, strength_set), NULL},
    DS_OPT_I64(opts, seed, "seed", "N", 0, 9223372036854775807.0, "0", "gaussian: the noise seed; the same seed gives the same files"),
    DS_OPT_OUTPUT(opts, dir, "DIR", "folder for the outputs (created when missing)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_JSON(opts, json, "print the summary as JSON"),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup poison --attack A --count K [--strength S] [--seed N] -o DIR HONEST.bd.h5 ...",
    .about = "Make K Byzantine deltas from n honest ones (same base, tensors and coding), written as ordinary\n"
             "delta files DIR/<attack>-<k>.bd.h5 (k = 0..K-1, owner poison-<attack>-<k>) with exactly the\n"
             "honest layout, for testing `deltasoup aggregate` (docs/poison.md). Per coordinate, over the\n"
             "honest values v_u (g(2b-1) of a 1-bit tensor, the value of a dense one), mean and population std:\n"
             "  sign-flip   -S * mean                      (S default 1)\n"
             "  scale       S * v_(k mod n)                (S default 10)\n"
             "  gaussian    S * rms * N(0,1), rms over the honest values of the tensor (S default 1, >= 0)\n"
             "  alie        mean + z * std, z = S, default z_max of \"A Little Is Enough\" from n and K\n"
             "  ipm         -S * mean                      (S = epsilon, default 0.1)\n"
             "1-bit tensors are re-coded: sign bit (value >= 0), scale = mean |value| per tensor/row/column.",
    .opts = options,
    .epilog = "Needs n >= 2 honest deltas for alie (std), n >= 1 otherwise. Exit codes: 0 ok, 2 usage,\n"
              "3 bad input (unreadable or mismatched deltas, non-finite values, an attack value that\n"
              "overflows the tensor's dtype), 4 an output exists (without --overwrite) or cannot be written.",
    .pos_off = offsetof(opts, honest),
    .pos_max = -1,
    .pos_name = "HONEST.bd.h5",
    .check = check};

/* Every honest delta must share the base and the layout (one message naming
 * the file and tensor); an attacker targets one base: no --force. */
static int check_layout(const char *p0, const ds_delta_meta *a, const char *p, const ds_delta_meta *b)
{
    if (strcmp(a->base_sha256, b->base_sha256) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: base_sha256 %.16s... differs from %s's %.16s...", p, b->base_sha256, p0,
                      a->base_sha256);
    return ds_delta_same_layout(p0, a, p, b);
}

/* Collective: open every honest delta, keep the first one's layout. */
static int read_layout(const ds_ctx *ctx, const opts *o, ds_delta_meta *layout)
{
    int rc = 0;
    for (int u = 0; u < o->n_in && !rc; u++) {
        ds_delta_file *f;
        if ((rc = ds_delta_open(o->in[u], ctx->comm, &f))) break;
        const ds_delta_meta *m = ds_delta_get_meta(f);
        if (u == 0) {
            *layout = *m;
            layout->entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(m->n + 1));
            memcpy(layout->entries, m->entries, sizeof(ds_delta_entry) * (size_t)m->n);
        } else {
            /* every rank holds the same metadata: the same verdict everywhere */
            rc = ds_ctx_agree(ctx, check_layout(o->in[0], layout, o->in[u], m));
        }
        ds_delta_close(f);
    }
    return rc;
}

/* The n honest values of tensor e, v[u * numel + j], as float32. */
static int read_values(ds_delta_rows *const *rd, const opts *o, const ds_delta_entry *e, float *v)
{
    const size_t numel = (size_t)ds_tinfo_numel(&e->t);
    int rc = 0;
    for (int u = 0; u < o->n_in && !rc; u++) rc = ds_delta_rows_values(rd[u], o->in[u], e, v + (size_t)u * numel);
    return rc;
}

/* The buffers of poison_local, allocated once for the largest entry this
 * rank owns and reused for every entry (no allocation per tensor). */
typedef struct {
    float *v, *x, *zero, *sc;
    uint64_t *bits;
    void *buf;
} buffers;

static void buffers_alloc(buffers *b, const ds_ctx *ctx, const opts *o, const ds_delta_meta *layout, const int *owner)
{
    size_t numel = 1, words = 1, scales = 1, bytes = 1, coded = 1;
    for (int i = 0; i < layout->n; i++) {
        if (owner[i] != ctx->rank) continue;
        const ds_delta_entry *e = &layout->entries[i];
        size_t n = (size_t)ds_tinfo_numel(&e->t), w = (size_t)(e->rows * e->words_per_row);
        numel = n > numel ? n : numel;
        if (!e->coded) {
            bytes = ds_tinfo_bytes(&e->t) > bytes ? ds_tinfo_bytes(&e->t) : bytes;
            continue;
        }
        words = w > words ? w : words;
        scales = (size_t)e->n_scales > scales ? (size_t)e->n_scales : scales;
        coded = n > coded ? n : coded;
    }
    b->v = ds_buf_alloc(sizeof(float) * (size_t)o->n_in * numel + 1);
    b->x = ds_buf_alloc(sizeof(float) * numel + 1);
    b->zero = ds_calloc(coded + 1, sizeof(float)); /* only read */
    b->sc = ds_malloc(sizeof(float) * scales);
    b->bits = ds_malloc(sizeof(uint64_t) * words + 1);
    b->buf = ds_buf_alloc(bytes + 1);
}

static void buffers_free(buffers *b)
{
    free(b->v), free(b->x), free(b->zero), free(b->sc), free(b->bits), free(b->buf);
}

/* Store b->x (float32 values of entry e) into entry i of f, coded as e says. */
static int write_values(ds_delta_file *f, int i, const ds_delta_entry *e, const buffers *b, const char *what)
{
    const size_t numel = (size_t)ds_tinfo_numel(&e->t);
    const float *x = b->x;
    int rc;
    if (e->coded) {
        /* BitDelta of x against zero: sign bit and mean |x| per tensor/row/column */
        ds_delta_entry ef = *e;
        ef.t.dtype = DS_DTYPE_F32;
        uint64_t *bits = b->bits;
        float *sc = b->sc;
        int64_t bad = ds_delta_code(&ef, x, b->zero, bits, sc);
        if (bad >= 0)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: element %lld overflows float32 (--strength too large?)", what, e->t.name,
                        (long long)bad);
        else if (!(rc = ds_delta_write_signs(f, i, bits)))
            rc = ds_delta_write_scales(f, i, sc);
        return rc;
    }
    void *buf = b->buf;
    ds_from_f32(e->t.dtype, x, buf, numel);
    int64_t bad = ds_find_nonfinite(e->t.dtype, buf, numel);
    if (bad >= 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: element %lld overflows %s (--strength too large?)", what, e->t.name,
                    (long long)bad, ds_dtype_name(e->t.dtype));
    else
        rc = ds_delta_write_dense(f, i, buf);
    return rc;
}

/* This rank's tensors: read, attack, write into all K outputs. Returns this
 * rank's status (not yet printed). Peak memory: (4n + 24) bytes per element
 * of the largest tensor this rank owns, plus its output's code. */
static int poison_local(const ds_ctx *ctx, const opts *o, double z, const ds_delta_meta *layout,
                        const ds_tensor_shard *sh, ds_delta_file **out, char **paths)
{
    ds_delta_rows **rd = ds_calloc((size_t)o->n_in, sizeof *rd);
    const int *owner = sh->owner, mine = sh->mine;
    int rc = 0, done = 0;
    for (int u = 0; u < o->n_in && !rc && mine; u++)
        rc = ds_delta_rows_open(o->in[u], &rd[u]);
    ds_progress pr;
    ds_progress_init(&pr, ctx, "tensors (rank 0's share)", mine);
    const ds_attack a = (ds_attack)o->a;
    const ds_attack_params ap = {.a = a, .strength = o->strength, .z = z, .seed = (uint64_t)o->seed, .n = o->n_in};
    const int same_for_all = ds_attack_same_for_all(a); /* one tensor serves all K outputs */
    buffers b;
    buffers_alloc(&b, ctx, o, layout, owner);
    float *v = b.v, *x = b.x;
    for (int i = 0; i < layout->n && !rc; i++) {
        if (owner[i] != ctx->rank) continue;
        const ds_delta_entry *e = &layout->entries[i];
        const size_t numel = (size_t)ds_tinfo_numel(&e->t);
        ds_attack_stats s;
        ds_attack_stats_init(&s, a, numel);
        rc = read_values(rd, o, e, v);
        if (!rc) ds_attack_stats_compute(a, o->n_in, numel, v, &s);
        for (long k = 0; k < o->count && !rc; k++) {
            if (k == 0 || !same_for_all) ds_attack_values(&ap, i, k, numel, v, &s, x);
            rc = write_values(out[k], i, e, &b, paths[k]);
        }
        ds_attack_stats_free(&s);
        ds_progress_step(&pr, ++done, "%s", e->t.name);
    }
    buffers_free(&b);
    for (int u = 0; u < o->n_in; u++)
        if (rd[u]) ds_delta_rows_close(rd[u]);
    free(rd);
    return rc;
}

static void print_summary(const ds_ctx *ctx, const opts *o, int n, double z, char **paths, char (*content)[65], double secs)
{
    if (ctx->rank != 0) return;
    const double strength = o->a == DS_ATTACK_ALIE ? z : o->strength;
    char owner[DS_NAME_MAX];
    if (o->json) {
        json_t *arr = json_array();
        for (long k = 0; k < o->count; k++) {
            snprintf(owner, sizeof owner, "poison-%s-%ld", ds_attack_names[o->a], k);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "file", paths[k], "owner", owner, "content_sha256", content[k]));
        }
        json_t *r = json_pack("{s:s, s:f, s:I, s:I, s:i, s:o, s:i, s:f}", "attack", ds_attack_names[o->a], "strength", strength,
                              "count", (json_int_t)o->count, "seed", (json_int_t)o->seed, "honest", n, "outputs", arr, "ranks",
                              ctx->size, "seconds", secs);
        if (!ds_verify_enabled()) json_object_set_new(r, "verify", json_false()); /* --no-verify */
        if (o->a == DS_ATTACK_ALIE) json_object_set_new(r, "z_default", json_boolean(!o->strength_set));
        char *txt = json_dumps(r, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
        json_decref(r);
    } else {
        int w = 4;
        for (long k = 0; k < o->count; k++) w = (int)strlen(paths[k]) > w ? (int)strlen(paths[k]) : w;
        if (o->a == DS_ATTACK_ALIE)
            printf("alie: z = %.17g (%s)\n", z, o->strength_set ? "--strength" : "z_max from n and K");
        printf("%-*s  %-9s  %-12s  %-24s  %s\n", w, "file", "attack", "strength", "owner", "content_sha256");
        for (long k = 0; k < o->count; k++) {
            snprintf(owner, sizeof owner, "poison-%s-%ld", ds_attack_names[o->a], k);
            printf("%-*s  %-9s  %-12.6g  %-24s  %s\n", w, paths[k], ds_attack_names[o->a], strength, owner, content[k]);
        }
        char el[32];
        printf("wrote %ld poisoned deltas from %d honest in %s on %d rank(s)\n", (long)o->count, n,
               ds_fmt_duration(secs, el, sizeof el), ctx->size);
    }
    fflush(stdout);
}

/* The K outputs DIR/<attack>-<k>.bd.h5, staged as NAME.tmp. */
typedef struct {
    int K, created, made_dir;
    char **paths;
    char (*content)[65];
    ds_delta_file **f;
} outputs;

/* Collective: the folder, then every output refused before any is created,
 * then each created with the honest layout. */
static int outputs_open(const ds_ctx *ctx, const opts *o, const ds_delta_meta *layout, outputs *w)
{
    w->made_dir = access(o->dir, F_OK) != 0;
    int rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(o->dir) : 0);
    for (int k = 0; k < w->K && !rc; k++) {
        size_t len = strlen(o->dir) + strlen(ds_attack_names[o->a]) + 32;
        w->paths[k] = ds_malloc(len);
        snprintf(w->paths[k], len, "%s/%s-%d.bd.h5", o->dir, ds_attack_names[o->a], k);
    }
    /* no output is an input (io/outfile.h), even with --overwrite */
    if (!rc) rc = ds_ctx_agree(ctx, ds_out_check_paths((const char *const *)w->paths, w->K, o->in, o->n_in));
    for (int k = 0; k < w->K && !rc; k++) rc = ds_out_begin(ctx, w->paths[k], o->overwrite);
    for (; w->created < w->K && !rc; w->created++) {
        ds_delta_meta m = *layout;
        m.content_sha256[0] = 0;
        snprintf(m.owner, sizeof m.owner, "poison-%s-%d", ds_attack_names[o->a], w->created);
        snprintf(m.scale_fit, sizeof m.scale_fit, "mean_abs");
        m.has_dp = 0; /* an attacker reports no privacy budget */
        if ((rc = ds_delta_create(w->paths[w->created], ctx->comm, &m, o->overwrite, &w->f[w->created]))) break;
    }
    return rc;
}

/* Collective: commit or remove every staged output; a failure leaves none
 * behind (nor the folder, when this run made it). Returns the final status. */
static int outputs_close(const ds_ctx *ctx, const opts *o, outputs *w, int rc)
{
    int committed = 0;
    for (int k = 0; k < w->created; k++) {
        int crc = ds_delta_commit(w->f[k], rc, NULL, w->content[k]);
        if (!rc && !(rc = crc)) committed++;
    }
    /* outputs committed before a later commit failed */
    for (int k = 0; k < committed && rc && ctx->rank == 0; k++) unlink(w->paths[k]);
    if (rc && w->made_dir && ctx->rank == 0) rmdir(o->dir);
    return rc;
}

int ds_job_poison(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.a = -1, .count = -1};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    const double t0 = ds_now();
    ds_delta_meta layout = {.n = 0, .entries = NULL};
    double z = o.strength;
    rc = read_layout(ctx, &o, &layout);
    if (!rc && o.a == DS_ATTACK_ALIE && !o.strength_set) rc = ds_ctx_agree(ctx, ds_attack_alie_z(o.n_in, o.count, &z));
    const int K = o.count;
    outputs w = {.K = K, .paths = ds_calloc((size_t)K, sizeof(char *)), .content = ds_calloc((size_t)K, 65),
                 .f = ds_calloc((size_t)K, sizeof(ds_delta_file *))};
    if (!rc) rc = outputs_open(ctx, &o, &layout, &w);
    if (!rc) { /* tensors shared out by elements */
        ds_tensor_shard sh;
        ds_tensor_shard_plan(&sh, ctx, layout.n, &layout.entries[0].t, sizeof *layout.entries, DS_WEIGH_ELEMENTS);
        rc = ds_ctx_agree(ctx, poison_local(ctx, &o, z, &layout, &sh, w.f, w.paths));
        ds_tensor_shard_free(&sh);
    }
    rc = outputs_close(ctx, &o, &w, rc);
    if (!rc) print_summary(ctx, &o, o.n_in, z, w.paths, w.content, ds_now() - t0);
    for (int k = 0; k < K; k++) free(w.paths[k]);
    free(w.paths), free(w.content), free(w.f), free(layout.entries);
    ds_opts_free(&cmd, &o);
    return rc;
}
