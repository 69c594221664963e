/* deltasoup aggregate: DeltaSoup, a Byzantine-robust aggregate of many
 * BitDelta deltas (docs/aggregate.md). Orchestration only: the math is in
 * src/aggregate.c, the chunk streaming in io/agg_stream.c, the signature
 * checks in src/sign.c and io/h5_delta_rows.c, the file format (with its
 * /provenance) in io/h5_delta.c.
 *
 * Flow: options -> every rank opens every input collectively for its layout
 * (errors print once) and checks it against the first input -> the trust
 * filter (privacy budget; Ed25519 signatures and recomputed content hashes
 * on each rank's share of the files) -> Krum's distances and choice -> the
 * output -> provenance and report.
 * Sharding: ranks own disjoint contiguous ranges of the participating files.
 * Each tensor goes in chunks of rows sized by --chunk-mb: every rank reads
 * its files' rows, an all-gather gives every rank all users' rows of the
 * chunk (io/agg_stream.h), then
 *   - Krum: each rank adds the chunk's squared distances of its share of the
 *     user pairs (pair p goes to rank p % size), in chunk order; one
 *     all-reduce at the end, where each entry is non-zero on one rank only,
 *     so D does not depend on the number of ranks;
 *   - the output: each rank reduces its own range of the chunk's rows, an
 *     all-gather brings the rows to the tensor's writer (tensors go to
 *     writers by size).
 * Chunk boundaries depend on --chunk-mb, the shapes and the number of
 * participants only, so the output's content hash is the same for any number
 * of ranks. The output is staged as NAME.tmp (ds_delta_create), committed
 * there, given its provenance, then put in place (ds_out_finish).
 * Resumable: --checkpoint DIR (src/checkpoint.h); SIGUSR1/SIGTERM finish the
 * tensor, checkpoint (the partial output NAME.tmp is kept) and exit 75. */
#include "config.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/agg_stream.h"
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "io/outfile.h"
#include "io/scan_stream.h"
#include "src/aggregate.h"
#include "src/bitdelta.h"
#include "src/checkpoint.h"
#include "src/comm.h"
#include "src/device_ops.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "src/merge.h"
#include "src/robust.h"
#include "src/opts.h"
#include "src/shard.h"
#include "src/sign.h"

#define CKPT_FILE "aggregate.ckpt"

typedef enum {
    M_MEAN, M_MEDIAN, M_TRIMMED, M_KRUM, M_MULTIKRUM, M_MAJORITY, M_TA, M_TIES, M_DARE_TIES, M_DARE_LINEAR, M_GM, M_CC,
    M_BULYAN
} method;
static const char *const method_names[] = {"mean", "median", "trimmed-mean", "krum", "multi-krum", "majority",
                                           "task-arithmetic", "ties", "dare-ties", "dare-linear", "geometric-median",
                                           "centered-clipping", "bulyan", NULL};
static const char *const pre_names[] = {"none", "nnm", NULL};
static const char *const comm_names[] = {"mpi", "nccl", NULL}; /* by ds_comm_backend */

/* ---- options */
typedef struct {
    int m; /* method; -1 until --method */
    const char *out, *report, *list, *keys, *device, *ckpt;
    int comm; /* ds_comm_backend */
    double trim, max_eps, chunk_mb;
    int f, select;
    int trim_set, f_set, select_set, has_max_eps, requantize, overwrite, force, dedup, keep_dups;
    ds_strlist pos; /* the positional deltas */
    int n_in;       /* inputs: the positional deltas, then --list's */
    char **in;
    int no_verify;
    double density, lambda; /* merging methods (src/merge.h) */
    int64_t seed;
    int density_set, lambda_set, seed_set;
    double tol, tau; /* geometric-median, centered-clipping (src/robust.h) */
    int max_iter, iters, pre;
    int tol_set, tau_set, max_iter_set, iters_set;
} opts;

static int is_merge(int m) { return m == M_TA || m == M_TIES || m == M_DARE_TIES || m == M_DARE_LINEAR; }
/* the merging methods that read --density and --seed (TIES: its tie-break) */
static int is_sparse(int m) { return is_merge(m) && m != M_TA; }
/* the methods that read --byzantine */
static int uses_f(const opts *o) { return o->m == M_KRUM || o->m == M_MULTIKRUM || o->m == M_BULYAN || o->pre; }
/* krum without --pre copies the chosen delta as stored */
static int copies(const opts *o) { return o->m == M_KRUM && !o->pre; }

static int check(void *p)
{
    const opts *o = p;
    if (o->m < 0) return ds_err(DS_EXIT_USAGE, "--method is required (see --help)");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o REF.bd.h5 is required");
    if (o->trim >= 0.5) return ds_err(DS_EXIT_USAGE, "--trim %g: must be below 0.5", o->trim);
    if (o->trim_set && o->m != M_TRIMMED && o->m != M_MAJORITY)
        return ds_err(DS_EXIT_USAGE, "--trim applies to trimmed-mean and majority, not %s", method_names[o->m]);
    if (o->f_set && !uses_f(o))
        return ds_err(DS_EXIT_USAGE, "--byzantine applies to krum, multi-krum, bulyan and --pre nnm, not %s",
                      method_names[o->m]);
    if ((o->tol_set || o->max_iter_set) && o->m != M_GM)
        return ds_err(DS_EXIT_USAGE, "--tol and --max-iter apply to geometric-median, not %s", method_names[o->m]);
    if ((o->tau_set || o->iters_set) && o->m != M_CC)
        return ds_err(DS_EXIT_USAGE, "--tau and --iters apply to centered-clipping, not %s", method_names[o->m]);
    if (o->m == M_CC && !o->tau_set) return ds_err(DS_EXIT_USAGE, "centered-clipping needs --tau T (the clipping radius)");
    if (o->pre && (o->m == M_MAJORITY || o->m == M_TIES))
        return ds_err(DS_EXIT_USAGE, "--pre nnm does not apply to %s (%s)", method_names[o->m],
                      o->m == M_MAJORITY ? "mixed deltas are not 1-bit" : "its trim would need the mixed deltas' magnitudes");
    if (o->select_set && o->m != M_MULTIKRUM) return ds_err(DS_EXIT_USAGE, "--select applies to multi-krum only");
    if (o->density_set && !is_sparse(o->m))
        return ds_err(DS_EXIT_USAGE, "--density applies to ties, dare-ties and dare-linear, not %s", method_names[o->m]);
    if (!(o->density > 0 && o->density <= 1))
        return ds_err(DS_EXIT_USAGE, "--density %g: must be in (0, 1] (the fraction of each delta kept)", o->density);
    if (o->seed_set && !is_sparse(o->m))
        return ds_err(DS_EXIT_USAGE, "--seed applies to ties, dare-ties and dare-linear, not %s", method_names[o->m]);
    if (o->lambda_set && !is_merge(o->m))
        return ds_err(DS_EXIT_USAGE, "--lambda applies to task-arithmetic, ties, dare-ties and dare-linear, not %s",
                      method_names[o->m]);
    if (!isfinite(o->lambda)) return ds_err(DS_EXIT_USAGE, "--lambda %g: must be finite", o->lambda);
    if (o->dedup && o->keep_dups) return ds_err(DS_EXIT_USAGE, "--dedup and --keep-duplicates exclude each other");
    if (o->comm == DS_COMM_NCCL && (!o->device || strcmp(o->device, "cuda") != 0))
        return ds_err(DS_EXIT_USAGE, "--comm nccl needs --device cuda (one GPU per rank)");
    if (o->requantize && (copies(o) || o->m == M_MAJORITY))
        return ds_err(DS_EXIT_USAGE, "--requantize: %s already gives 1-bit tensors", method_names[o->m]);
    return 0;
}

/* The options whose presence matters (a rule in check() or a message) keep
 * a count of occurrences (.given), which the DS_OPT_* kinds do not set. */
static const ds_opt options[] = {
    DS_OPT_CHOICE(opts, m, "method", "M", method_names, NULL,
                  "mean | median | trimmed-mean | krum | multi-krum | majority |\n"
                  "task-arithmetic | ties | dare-ties | dare-linear |\n"
                  "geometric-median | centered-clipping | bulyan"),
    DS_OPT_OUTPUT(opts, out, "REF", "delta file to write, with provenance (contributors, weights)"),
    {.name = "trim", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, trim), .meta = "T",
     .help = "trimmed-mean: drop floor(T n) lowest and highest values per\n"
             "coordinate; majority: trim of the users' scales",
     .def = "0.1", .lo = 0.0, .hi = 0.5, .given = DS_OPT_GIVEN(opts, trim_set)},
    {.name = "byzantine", .type = DS_OPT_T_INT, .off = offsetof(opts, f), .meta = "F",
     .help = "krum, multi-krum (n >= 2F + 3), bulyan (n >= 4F + 3), --pre nnm\n"
             "(n > 2F): tolerated bad deltas",
     .def = "0", .lo = 0, .hi = 1 << 20,
     .given = DS_OPT_GIVEN(opts, f_set)},
    {.name = "select", .type = DS_OPT_T_INT, .off = offsetof(opts, select), .meta = "M",
     .help = "multi-krum: average the M best-scored deltas (default n - F)", .lo = 1, .hi = 1 << 20,
     .given = DS_OPT_GIVEN(opts, select_set)},
    {.name = "density", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, density), .meta = "D",
     .help = "ties: keep each delta's top-D fraction by magnitude; dare-ties,\n"
             "dare-linear: keep each coordinate with probability D, times 1/D;\n"
             "D in (0, 1]",
     .def = "1", .lo = -INFINITY, .hi = INFINITY, .given = DS_OPT_GIVEN(opts, density_set)},
    {.name = "lambda", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, lambda), .meta = "L",
     .help = "task-arithmetic, ties, dare-ties, dare-linear: multiply the\nmerged delta by L",
     .def = "1", .lo = -INFINITY, .hi = INFINITY, .given = DS_OPT_GIVEN(opts, lambda_set)},
    {.name = "seed", .type = DS_OPT_T_I64, .off = offsetof(opts, seed), .meta = "S",
     .help = "ties, dare-ties, dare-linear: key of the counter-based generator\n"
             "(DARE's masks, TIES's ties at equal magnitude)",
     .def = "0", .lo = 0, .hi = INT64_MAX, .given = DS_OPT_GIVEN(opts, seed_set)},
    {.name = "tol", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, tol), .meta = "T",
     .help = "geometric-median: stop when the objective changes by less than T\n(relative)",
     .def = "1e-6", .lo = 0, .hi = 1, .given = DS_OPT_GIVEN(opts, tol_set)},
    {.name = "max-iter", .type = DS_OPT_T_INT, .off = offsetof(opts, max_iter), .meta = "N",
     .help = "geometric-median: at most N Weiszfeld updates", .def = "100", .lo = 1, .hi = 1 << 20,
     .given = DS_OPT_GIVEN(opts, max_iter_set)},
    {.name = "tau", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, tau), .meta = "T",
     .help = "centered-clipping: clipping radius (L2 over the whole delta; required)", .lo = 0, .hi = INFINITY,
     .given = DS_OPT_GIVEN(opts, tau_set)},
    {.name = "iters", .type = DS_OPT_T_INT, .off = offsetof(opts, iters), .meta = "L",
     .help = "centered-clipping: clipping iterations", .def = "1", .lo = 1, .hi = 1 << 20,
     .given = DS_OPT_GIVEN(opts, iters_set)},
    DS_OPT_CHOICE(opts, pre, "pre", "P", pre_names, "none",
                  "nnm: first replace each delta by the mean of its n - F nearest\n"
                  "(itself included; F = --byzantine), then apply --method"),
    DS_OPT_FLAG(opts, requantize, "requantize",
                "mean, median, trimmed-mean, multi-krum, the merging methods: store\n"
                "1-bit tensors as sign + mean |x| scale (else as float32 dense deltas)"),
    DS_OPT_STRING(opts, list, "list", "FILE", "more inputs, one path per line ('#' comments)"),
    DS_OPT_STRING(opts, report, "report", "R.json", "write the provenance, the table and (3 or more\n"
                                                    "participants) the anomaly report's \"deltas\" as JSON"),
    DS_OPT_DOUBLE(opts, chunk_mb, "chunk-mb", "N", 1.0 / 1024, 1 << 24, "256",
                  "MiB for one chunk of all users' rows (fractions ok)"),
    DS_OPT_CHECKPOINT(opts, ckpt, "keep resumable state in DIR; a run with the same DIR resumes"),
    {.name = "max-dp-epsilon", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, max_eps), .meta = "E",
     .help = "drop deltas whose dp_epsilon is missing or above E", .lo = 0.0, .hi = INFINITY,
     .given = DS_OPT_GIVEN(opts, has_max_eps)},
    DS_OPT_STRING(opts, keys, "trusted-keys", "FILE", "drop deltas not signed by a key in FILE (`deltasoup sign`)"),
    DS_OPT_FORCE(opts, force, "aggregate deltas made for different bases (warns)"),
    DS_OPT_FLAG(opts, dedup, "dedup",
                "count duplicate inputs once (the same content_sha256; with\n"
                "--trusted-keys also the same owner signed by the same key);\n"
                "without it a duplicate is refused"),
    DS_OPT_FLAG(opts, keep_dups, "keep-duplicates",
                "count every copy of a duplicate input (robustness experiments:\n"
                "K colluding copies of one poisoned delta); warns"),
    DS_OPT_DEVICE(opts, device, "cpu (default) or cuda: cuda binds one GPU per rank, for --comm\n"
                                "nccl; the statistics run on the CPU either way (docs/gpu.md)"),
    DS_OPT_CHOICE(opts, comm, "comm", "C", comm_names, "mpi",
                  "mpi or nccl: the all-gathers of the chunks (nccl needs\n"
                  "--device cuda and one GPU per rank)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup aggregate --method M -o REF.bd.h5 [options] D1.bd.h5 D2.bd.h5 ...",
    .about = "Aggregate many users' deltas (same base, tensors and coding) into one reference delta\n"
             "with a Byzantine-robust method; 1-bit inputs are never expanded (docs/aggregate.md).",
    .opts = options,
    .epilog = "With --checkpoint, SIGUSR1 or SIGTERM makes every rank finish the current tensor, write a\n"
              "checkpoint (the finished tensors are kept) and exit with code 75; running the same command\n"
              "again continues and ends with the same output as an uninterrupted run.",
    .pos_off = offsetof(opts, pos),
    .pos_min = 0, /* --list may name them all: "no input deltas" is checked after it */
    .pos_max = -1,
    .pos_name = "input deltas",
    .check = check};

static void add_input(opts *o, const char *path)
{
    o->in = ds_realloc(o->in, sizeof(char *) * (size_t)(o->n_in + 1));
    o->in[o->n_in++] = ds_strdup(path);
}

static int add_list(opts *o, const char *path)
{
    char *text;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ' || *line == '\t') line++;
        char *end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = 0;
        if (!*line || *line == '#') continue;
        add_input(o, line);
    }
    free(text);
    return 0;
}

/* Collective, after parsing: the inputs, positional ones first. */
static int gather_inputs(const ds_ctx *ctx, opts *o)
{
    for (int i = 0; i < o->pos.n; i++) add_input(o, o->pos.v[i]);
    int rc = o->list ? add_list(o, o->list) : 0;
    if (!rc && o->n_in == 0) rc = ds_err(DS_EXIT_USAGE, "no input deltas (see --help)");
    return ds_ctx_agree(ctx, rc);
}

static void free_inputs(opts *o)
{
    for (int k = 0; k < o->n_in; k++) free(o->in[k]);
    free(o->in);
    o->in = NULL;
    o->n_in = 0;
}

/* ---- inputs */
typedef struct {
    const char *path;
    char owner[DS_NAME_MAX], content[65], base[65];
    char signer[65]; /* the verified signer's public key (--trusted-keys), else "" */
    int has_dp;
    double eps, dlt;
    int dropped;
    char reason[200];
    double kept, weight, kept_frac, score;
} input;

/* Every input must share the base (unless --force, which warns) and the
 * layout; a mismatch names the file and tensor. */
static int check_layout(const char *p0, const ds_delta_meta *a, const char *p, const ds_delta_meta *b, int force, int rank)
{
    if (strcmp(a->base_sha256, b->base_sha256) != 0) {
        if (!force)
            return ds_err(DS_EXIT_INPUT, "%s: base_sha256 %.16s... differs from %s's %.16s... (use --force to aggregate anyway)",
                          p, b->base_sha256, p0, a->base_sha256);
        if (rank == 0)
            fprintf(stderr, "deltasoup aggregate: warning: %s: base_sha256 differs from %s's (--force)\n", p, p0);
    }
    return ds_delta_same_layout(p0, a, p, b);
}

/* Collective: open every input, keep its identity and the first one's layout. */
static int read_inputs(ds_ctx *ctx, const opts *o, input *in, ds_delta_meta *layout)
{
    int rc = 0;
    ds_progress pr;
    ds_progress_init(&pr, ctx, "open", o->n_in);
    for (int k = 0; k < o->n_in && !rc; k++) {
        ds_delta_file *f;
        rc = ds_delta_open(o->in[k], ctx->comm, &f);
        if (rc) break;
        const ds_delta_meta *m = ds_delta_get_meta(f);
        input *x = &in[k];
        x->path = o->in[k];
        snprintf(x->owner, sizeof x->owner, "%s", m->owner);
        snprintf(x->content, sizeof x->content, "%s", m->content_sha256);
        snprintf(x->base, sizeof x->base, "%s", m->base_sha256);
        x->has_dp = m->has_dp;
        x->eps = m->dp_epsilon;
        x->dlt = m->dp_delta;
        x->score = NAN;
        if (k == 0) {
            *layout = *m;
            layout->entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(m->n ? m->n : 1));
            memcpy(layout->entries, m->entries, sizeof(ds_delta_entry) * (size_t)m->n);
        } else {
            /* every rank holds the same metadata: the same verdict everywhere */
            rc = ds_ctx_agree(ctx, check_layout(o->in[0], layout, o->in[k], m, o->force, ctx->rank));
        }
        if (!rc && !x->content[0]) rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: no content_sha256 (unfinished file?)", x->path));
        ds_delta_close(f);
        if ((k + 1) % 16 == 0 || k + 1 == o->n_in) ds_progress_step(&pr, k + 1, NULL);
    }
    return rc;
}

/* ---- the trust filter (docs/aggregate.md "Trust filter and signing") */
static void dp_filter(const opts *o, input *in)
{
    for (int k = 0; k < o->n_in && o->has_max_eps; k++) {
        input *x = &in[k];
        if (!x->has_dp) snprintf(x->reason, sizeof x->reason, "no recorded privacy budget (dp_epsilon)");
        else if (!(x->eps <= o->max_eps))
            snprintf(x->reason, sizeof x->reason, "dp_epsilon %g > --max-dp-epsilon %g", x->eps, o->max_eps);
        x->dropped = x->reason[0] != 0;
    }
}

typedef struct {
    int32_t dropped;
    char reason[196];
    char signer[65]; /* the signer's public key of a trusted file */
} verdict;

/* This rank's share [lo, hi) of the inputs through the signature check. */
static int check_signatures(const input *in, int64_t lo, int64_t hi, const ds_delta_meta *layout, const ds_trusted_key *keys,
                            int nkeys, verdict *v)
{
    int rc = 0;
    for (int64_t k = lo; k < hi && !rc; k++) {
        const input *x = &in[k];
        if (x->dropped) continue;
        ds_sign_claim c = {x->content, x->base, x->owner, x->has_dp, x->eps, x->dlt};
        rc = ds_delta_rows_trust(x->path, &c, layout->n, layout->entries, keys, nkeys, v[k - lo].reason,
                                 sizeof v[k - lo].reason);
        v[k - lo].dropped = v[k - lo].reason[0] != 0;
        if (!rc && !v[k - lo].dropped) {
            char sig[129];
            int present;
            rc = ds_delta_sig_read(x->path, sig, v[k - lo].signer, &present);
        }
    }
    return rc;
}

/* Collective: the trust filter. Marks in[k].dropped with a reason. */
static int trust_filter(ds_ctx *ctx, ds_comm *comm, const opts *o, input *in, const ds_delta_meta *layout)
{
    dp_filter(o, in);
    if (!o->keys) return 0;
    ds_trusted_key *keys = NULL;
    int nkeys = 0;
    int rc = ds_ctx_agree(ctx, ds_sign_trusted_load(o->keys, &keys, &nkeys));
    if (!rc) rc = ds_ctx_agree(ctx, ds_sign_init());
    if (rc) {
        free(keys);
        return rc;
    }
    int64_t lo, hi;
    ds_shard_range(o->n_in, ctx->rank, ctx->size, &lo, &hi);
    const int maxloc = (o->n_in + ctx->size - 1) / ctx->size;
    verdict *send = ds_calloc((size_t)(maxloc ? maxloc : 1), sizeof(verdict));
    verdict *all = ds_calloc((size_t)ctx->size * (size_t)(maxloc ? maxloc : 1), sizeof(verdict));
    rc = ds_ctx_agree(ctx, check_signatures(in, lo, hi, layout, keys, nkeys, send));
    free(keys);
    if (!rc) {
        ds_comm_allgather(comm, send, all, sizeof(verdict) * (size_t)maxloc);
        for (int r = 0; r < ctx->size; r++) {
            int64_t a, b;
            ds_shard_range(o->n_in, r, ctx->size, &a, &b);
            for (int64_t k = a; k < b; k++) {
                const verdict *v = &all[(size_t)r * (size_t)maxloc + (size_t)(k - a)];
                snprintf(in[k].signer, sizeof in[k].signer, "%s", v->signer);
                if (!v->dropped) continue;
                in[k].dropped = 1;
                snprintf(in[k].reason, sizeof in[k].reason, "%s", v->reason);
            }
        }
    }
    free(send);
    free(all);
    return rc;
}

/* The same delta given twice (docs/aggregate.md "Duplicate inputs"): the
 * same content hash, or with --trusted-keys the same owner signed by the
 * same key. Refused (DS_EXIT_INPUT naming both files), or with --dedup the
 * later one dropped. Every rank holds the same identities: same verdict. */
static int dedup_filter(const opts *o, input *in, int rank0)
{
    int kept = 0;
    for (int j = 1; j < o->n_in; j++) {
        input *y = &in[j];
        if (y->dropped) continue;
        for (int k = 0; k < j; k++) {
            const input *x = &in[k];
            if (x->dropped) continue;
            const int same_content = strcmp(x->content, y->content) == 0;
            const int same_signer = o->keys && x->signer[0] && strcmp(x->signer, y->signer) == 0 &&
                                    strcmp(x->owner, y->owner) == 0;
            if (!same_content && !same_signer) continue;
            if (o->keep_dups) {
                kept++;
                break;
            }
            char what[160];
            if (same_content) snprintf(what, sizeof what, "the same delta (content_sha256 %.16s...)", y->content);
            else snprintf(what, sizeof what, "the same owner '%.40s' signed by the same key %.16s...", y->owner, y->signer);
            if (!o->dedup)
                return ds_err(DS_EXIT_INPUT, "%s and %s: %s given twice (use --dedup to count it once)", x->path,
                              y->path, what);
            y->dropped = 1;
            snprintf(y->reason, sizeof y->reason, "duplicate of input %d (%s, --dedup)", k,
                     same_content ? "same content" : "same owner and key");
            break;
        }
    }
    if (kept && rank0)
        fprintf(stderr, "deltasoup aggregate: warning: %d duplicate input(s) counted as separate deltas (--keep-duplicates)\n",
                kept);
    return 0;
}

/* ---- checkpoints (docs/aggregate.md "Checkpoint and resume") */

/* Where a run stands: phase 0 is Krum's distance pass, phase 1 the output;
 * next is the first tensor of that phase not done. */
typedef struct {
    int on;           /* --checkpoint given */
    int exists;       /* DIR/aggregate.ckpt was there at the start */
    char path[4200];  /* DIR/aggregate.ckpt */
    ds_ckpt *rec;     /* the job's record */
    ds_ckpt *saved;   /* the checkpoint resumed from, or NULL */
    int phase, next;
    int stopped;      /* the ranks agreed to stop after tensor next - 1 */
} resume;

static ds_ckpt *ckpt_record(const opts *o, const input *in, int n, const int *idx)
{
    ds_ckpt *k = ds_ckpt_new("aggregate");
    ds_ckpt_record_int(k, "version", 1);
    ds_ckpt_record_str(k, "method", method_names[o->m]);
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) ds_ckpt_record_double(k, "trim", o->trim);
    if (uses_f(o)) ds_ckpt_record_int(k, "byzantine", o->f);
    if (o->pre) ds_ckpt_record_str(k, "pre", pre_names[o->pre]);
    if (o->m == M_GM) ds_ckpt_record_double(k, "tol", o->tol);
    if (o->m == M_GM) ds_ckpt_record_int(k, "max_iter", o->max_iter);
    if (o->m == M_CC) ds_ckpt_record_double(k, "tau", o->tau);
    if (o->m == M_CC) ds_ckpt_record_int(k, "iters", o->iters);
    if (o->m == M_MULTIKRUM) ds_ckpt_record_int(k, "select", o->select);
    if (!copies(o) && o->m != M_MAJORITY) ds_ckpt_record_int(k, "requantize", o->requantize);
    if (is_sparse(o->m)) ds_ckpt_record_double(k, "density", o->density);
    if (is_sparse(o->m)) ds_ckpt_record_int(k, "seed", o->seed);
    if (is_merge(o->m)) ds_ckpt_record_double(k, "lambda", o->lambda);
    ds_ckpt_record_double(k, "chunk_mb", o->chunk_mb);
    ds_ckpt_record_str(k, "output", o->out);
    ds_ckpt_record_int(k, "inputs", n);
    for (int p = 0; p < n; p++) {
        char key[32];
        snprintf(key, sizeof key, "input_%d_sha256", p);
        ds_ckpt_record_str(k, key, in[idx[p]].content);
    }
    return k;
}

/* Collective: save where the run stopped. d (phase 0): this rank's share of
 * Krum's distance sums; score/sel (phase 1, Krum); kept (phase 1): this
 * rank's counts of the np participants. Rank 0 writes the sums over ranks
 * (exact: each distance pair lives on one rank, counts are integers). */
static int ckpt_save(const ds_ctx *ctx, resume *ck, int n, const double *d, const double *score, const unsigned char *sel,
                     int np, const uint64_t *kept)
{
    const size_t nn = (size_t)n * (size_t)n;
    double *dsum = d ? ds_malloc(sizeof(double) * nn + 1) : NULL;
    uint64_t *ksum = kept ? ds_malloc(sizeof(uint64_t) * (size_t)np + 1) : NULL;
    if (d) MPI_Reduce(d, dsum, (int)nn, MPI_DOUBLE, MPI_SUM, 0, ctx->comm);
    if (kept) MPI_Reduce(kept, ksum, np, MPI_UINT64_T, MPI_SUM, 0, ctx->comm);
    int rc = 0;
    if (ctx->rank == 0) {
        ds_ckpt *k = ck->rec;
        ds_ckpt_state_int(k, "phase", ck->phase);
        ds_ckpt_state_int(k, "next_tensor", ck->next);
        ds_ckpt_state_int(k, "ranks", ctx->size);
        if (d) ds_ckpt_put_array(k, "distances", DS_DTYPE_F64, (int64_t)nn, dsum);
        if (score) {
            int32_t *s32 = ds_malloc(sizeof(int32_t) * (size_t)n + 1);
            for (int p = 0; p < n; p++) s32[p] = sel[p];
            ds_ckpt_put_array(k, "krum_score", DS_DTYPE_F64, n, score);
            ds_ckpt_put_array(k, "krum_selected", DS_DTYPE_I32, n, s32);
            free(s32);
        }
        if (kept) ds_ckpt_put_array(k, "kept", DS_DTYPE_U64, np, ksum);
        rc = ds_ckpt_write(k, ck->path);
    }
    free(dsum);
    free(ksum);
    return ds_ctx_agree(ctx, rc);
}

/* Collective: read and check the checkpoint when there is one (ck->saved). */
static int ckpt_restore(const ds_ctx *ctx, resume *ck, const opts *o, int n_tensors)
{
    if (!ck->exists) return 0;
    int64_t phase = 0, next = 0, ranks = 0;
    const int krum = o->m == M_KRUM || o->m == M_MULTIKRUM;
    int rc = ds_ckpt_read(ck->path, &ck->saved);
    if (!rc) rc = ds_ckpt_match(ck->saved, ck->rec, ck->path);
    if (!rc) rc = ds_ckpt_get_int(ck->saved, "phase", &phase);
    if (!rc) rc = ds_ckpt_get_int(ck->saved, "next_tensor", &next);
    if (!rc) rc = ds_ckpt_get_int(ck->saved, "ranks", &ranks);
    if (!rc && (phase < !krum || phase > 1 || next < 0 || next > n_tensors - phase))
        rc = ds_err(DS_EXIT_INPUT, "%s: checkpoint state out of range (phase %lld, tensor %lld of %d)", ck->path,
                    (long long)phase, (long long)next, n_tensors);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    ck->phase = (int)phase;
    ck->next = (int)next;
    if (!ctx->quiet)
        ds_printf0(ctx, "[aggregate] resuming from %s at tensor %d/%d of the %s (saved at %lld rank(s))\n", ck->path,
                   ck->next, n_tensors, phase ? "output" : "distances", (long long)ranks);
    return 0;
}

/* Collective: Krum's distance sums so far into d, each pair on the rank
 * that adds to it (pair p on rank p % size, as ds_agg_dist_* split them). */
static int ckpt_get_distances(const ds_ctx *ctx, const resume *ck, int n, double *d)
{
    const size_t nn = (size_t)n * (size_t)n, pairs = (size_t)n * (size_t)(n - 1) / 2;
    double *all = ds_malloc(sizeof(double) * nn + 1);
    int rc = ds_ctx_agree(ctx, ds_ckpt_get_array(ck->saved, "distances", DS_DTYPE_F64, (int64_t)nn, all));
    for (size_t p = (size_t)ctx->rank; p < pairs && !rc; p += (size_t)ctx->size) {
        size_t i, j;
        ds_agg_pair_index((size_t)n, p, &i, &j);
        d[i * (size_t)n + j] = all[i * (size_t)n + j];
    }
    free(all);
    return rc;
}

static int ckpt_get_krum(const ds_ctx *ctx, const resume *ck, int n, double *score, unsigned char *sel)
{
    int32_t *s32 = ds_malloc(sizeof(int32_t) * (size_t)n + 1);
    int rc = ds_ckpt_get_array(ck->saved, "krum_score", DS_DTYPE_F64, n, score);
    if (!rc) rc = ds_ckpt_get_array(ck->saved, "krum_selected", DS_DTYPE_I32, n, s32);
    for (int p = 0; p < n && !rc; p++) sel[p] = s32[p] != 0;
    free(s32);
    return ds_ctx_agree(ctx, rc);
}

/* ---- the output */
static void out_entry(const opts *op, const ds_delta_entry *in, ds_delta_entry *o)
{
    *o = *in;
    if (!in->coded || copies(op) || op->m == M_MAJORITY || op->requantize) return;
    /* a per-coordinate statistic of 1-bit values is not 1-bit: float32 dense */
    o->coded = 0;
    o->t.dtype = DS_DTYPE_F32;
    o->mode = DS_SCALE_TENSOR;
    o->words_per_row = o->n_scales = 0;
}

/* ---- provenance and report */
static void params_text(const opts *o, char *buf, size_t n)
{
    buf[0] = 0;
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) snprintf(buf + strlen(buf), n - strlen(buf), "trim=%.17g\n", o->trim);
    if (uses_f(o)) snprintf(buf + strlen(buf), n - strlen(buf), "byzantine=%d\n", o->f);
    if (o->pre) snprintf(buf + strlen(buf), n - strlen(buf), "pre=%s\n", pre_names[o->pre]);
    if (o->m == M_GM) snprintf(buf + strlen(buf), n - strlen(buf), "tol=%.17g\nmax_iter=%d\n", o->tol, o->max_iter);
    if (o->m == M_CC) snprintf(buf + strlen(buf), n - strlen(buf), "tau=%.17g\niters=%d\n", o->tau, o->iters);
    if (o->m == M_MULTIKRUM) snprintf(buf + strlen(buf), n - strlen(buf), "select=%d\n", o->select);
    if (is_sparse(o->m)) snprintf(buf + strlen(buf), n - strlen(buf), "density=%.17g\n", o->density);
    if (is_merge(o->m)) snprintf(buf + strlen(buf), n - strlen(buf), "lambda=%.17g\n", o->lambda);
    if (is_sparse(o->m)) snprintf(buf + strlen(buf), n - strlen(buf), "seed=%lld\n", (long long)o->seed);
    if (!copies(o) && o->m != M_MAJORITY) snprintf(buf + strlen(buf), n - strlen(buf), "requantize=%d\n", o->requantize);
}

/* SHA-256 over the method, its parameters and the contributors' content
 * hashes in input order (docs/aggregate.md "Version hash"). */
static void version_hash(const opts *o, const input *in, char hex[65])
{
    char p[256];
    params_text(o, p, sizeof p);
    ds_sha256 *h = ds_sha256_new();
    const char *head = "deltasoup.aggregate.v1\nmethod=";
    ds_sha256_update(h, head, strlen(head));
    ds_sha256_update(h, method_names[o->m], strlen(method_names[o->m]));
    ds_sha256_update(h, "\n", 1);
    ds_sha256_update(h, p, strlen(p));
    for (int k = 0; k < o->n_in; k++) {
        if (in[k].dropped) continue;
        ds_sha256_update(h, "input=", 6);
        ds_sha256_update(h, in[k].content, 64);
        ds_sha256_update(h, "\n", 1);
    }
    ds_digest d;
    ds_sha256_final(h, &d);
    ds_digest_hex(&d, hex);
}

static const char *status_of(const input *x) { return x->dropped ? "dropped" : x->weight > 0 ? "used" : "rejected"; }

static json_t *params_json(const opts *o)
{
    json_t *p = json_object();
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) json_object_set_new(p, "trim", json_real(o->trim));
    if (uses_f(o)) json_object_set_new(p, "byzantine", json_integer(o->f));
    if (o->pre) json_object_set_new(p, "pre", json_string(pre_names[o->pre]));
    if (o->m == M_GM) json_object_set_new(p, "tol", json_real(o->tol));
    if (o->m == M_GM) json_object_set_new(p, "max_iter", json_integer(o->max_iter));
    if (o->m == M_CC) json_object_set_new(p, "tau", json_real(o->tau));
    if (o->m == M_CC) json_object_set_new(p, "iters", json_integer(o->iters));
    if (o->m == M_MULTIKRUM) json_object_set_new(p, "select", json_integer(o->select));
    if (!copies(o) && o->m != M_MAJORITY) json_object_set_new(p, "requantize", json_boolean(o->requantize));
    if (is_sparse(o->m)) json_object_set_new(p, "density", json_real(o->density));
    if (is_sparse(o->m)) json_object_set_new(p, "seed", json_integer(o->seed));
    if (is_merge(o->m)) json_object_set_new(p, "lambda", json_real(o->lambda));
    if (o->has_max_eps) json_object_set_new(p, "max_dp_epsilon", json_real(o->max_eps));
    if (o->keys) json_object_set_new(p, "trusted_keys", json_string(o->keys));
    json_object_set_new(p, "chunk_mb", json_real(o->chunk_mb));
    return p;
}

static json_t *report_json(const opts *o, const input *in, const char *version, const char *content, const char *base, int n_used)
{
    json_t *arr = json_array();
    for (int k = 0; k < o->n_in; k++) {
        const input *x = &in[k];
        json_array_append_new(
            arr, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:o}", "index", k, "path", x->path, "owner", x->owner,
                           "content_sha256", x->content, "status", status_of(x), "reason", x->reason, "weight", x->weight,
                           "kept_fraction", x->kept_frac, "krum_score", isnan(x->score) ? json_null() : json_real(x->score)));
    }
    json_t *rep = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:i, s:i, s:o}", "method", method_names[o->m], "params", params_json(o),
                     "version_sha256", version, "output", o->out, "content_sha256", content, "base_sha256", base, "n_inputs",
                     o->n_in, "n_used", n_used, "contributors", arr);
    if (!ds_verify_enabled()) json_object_set_new(rep, "verify", json_false()); /* --no-verify */
    return rep;
}

/* Rank 0: the provenance (io/h5_delta.h) into the staged output at path. */
static int write_provenance(const char *path, const opts *o, const input *in, const char *version, int n_used)
{
    json_t *pj = params_json(o);
    char *ptxt = json_dumps(pj, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(pj);
    const size_t n = (size_t)o->n_in;
    const char **owner = ds_malloc(sizeof(char *) * n), **content = ds_malloc(sizeof(char *) * n);
    const char **status = ds_malloc(sizeof(char *) * n), **reason = ds_malloc(sizeof(char *) * n);
    double *w = ds_malloc(sizeof(double) * n), *kf = ds_malloc(sizeof(double) * n), *sc = ds_malloc(sizeof(double) * n);
    for (size_t k = 0; k < n; k++) {
        owner[k] = in[k].owner, content[k] = in[k].content, status[k] = status_of(&in[k]), reason[k] = in[k].reason;
        w[k] = in[k].weight, kf[k] = in[k].kept_frac, sc[k] = in[k].score;
    }
    ds_delta_provenance p = {.method = method_names[o->m], .params = ptxt, .version_sha256 = version, .n = o->n_in,
                             .n_used = n_used, .owner = owner, .content_sha256 = content, .status = status,
                             .reason = reason, .weight = w, .kept_fraction = kf, .krum_score = sc};
    int rc = ds_delta_write_provenance(path, &p);
    free(ptxt), free(owner), free(content), free(status), free(reason), free(w), free(kf), free(sc);
    return rc;
}

static void print_table(const ds_ctx *ctx, const opts *o, const input *in)
{
    if (ctx->rank != 0) return;
    printf("  %3s  %-20s %-16s %-8s %10s %8s %14s  %s\n", "#", "owner", "content", "status", "weight", "kept", "krum_score",
           "reason");
    for (int k = 0; k < o->n_in; k++) {
        const input *x = &in[k];
        char score[32] = "-";
        if (!isnan(x->score)) snprintf(score, sizeof score, "%.6g", x->score);
        printf("  %3d  %-20.20s %-16.16s %-8s %10.6f %8.4f %14s  %s\n", k, x->owner, x->content, status_of(x), x->weight,
               x->kept_frac, score, x->reason);
    }
    fflush(stdout);
}

/* ---- the plan: how many deltas each method needs, what it drops */
static int check_counts(const opts *o, int n, int n_dropped, int rank0, ds_agg_reduce *h, int *select)
{
    char why[96] = "";
    if (n_dropped) snprintf(why, sizeof why, " (%d of %d inputs dropped by the trust filter)", n_dropped, o->n_in);
    if (n < 1) return ds_err(DS_EXIT_INPUT, "no deltas left to aggregate%s", why);
    h->majority = o->m == M_MAJORITY;
    h->k = h->k_scale = 0;
    if (o->m == M_MEDIAN) h->k = (size_t)(n - 1) / 2;
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) {
        size_t k = (size_t)floor(o->trim * n);
        if (2 * k >= (size_t)n)
            return ds_err(DS_EXIT_USAGE, "--trim %g drops %zu values at each end: needs more than %zu deltas, got %d%s", o->trim, k,
                          2 * k, n, why);
        if (k == 0 && o->trim > 0) {
            /* the trim asked for removes nothing: trimmed-mean would be the plain mean */
            long need = (long)ceil(1.0 / o->trim);
            while (need > 1 && floor(o->trim * (double)(need - 1)) >= 1) need--;
            while (floor(o->trim * (double)need) < 1) need++;
            const char *what = o->m == M_TRIMMED ? "values" : "scales";
            if (o->trim_set)
                return ds_err(DS_EXIT_USAGE, "--trim %g drops no %s with %d deltas (floor(%g x %d) = 0): needs at least %ld%s",
                              o->trim, what, n, o->trim, n, need, why);
            if (rank0)
                fprintf(stderr, "deltasoup aggregate: warning: the default --trim %g drops no %s with %d deltas (at least %ld needed)\n",
                        o->trim, what, n, need);
        }
        if (o->m == M_TRIMMED) h->k = k;
        else h->k_scale = k;
    }
    if (o->m == M_MAJORITY) h->k = (size_t)(n - 1) / 2; /* dense tensors: the median */
    h->merge = NULL;
    h->thr = NULL;
    h->bulyan_beta = 0;
    h->mix = NULL;
    h->nmix = 0;
    if (o->m == M_BULYAN && n < 4 * o->f + 3)
        return ds_err(DS_EXIT_USAGE, "bulyan with --byzantine %d needs at least %d deltas (4F + 3), got %d%s", o->f,
                      4 * o->f + 3, n, why);
    if (o->pre && n <= 2 * o->f)
        return ds_err(DS_EXIT_USAGE, "--pre nnm with --byzantine %d needs more than %d deltas (2F), got %d%s", o->f,
                      2 * o->f, n, why);
    if (o->m == M_KRUM || o->m == M_MULTIKRUM) {
        if (n < 2 * o->f + 3)
            return ds_err(DS_EXIT_USAGE, "%s with --byzantine %d needs at least %d deltas (2F + 3), got %d%s",
                          method_names[o->m], o->f, 2 * o->f + 3, n, why);
        *select = o->m == M_KRUM ? 1 : o->select_set ? o->select : n - o->f;
        if (*select > n) return ds_err(DS_EXIT_USAGE, "--select %d: only %d deltas%s", *select, n, why);
    }
    return 0;
}

/* ---- the run: what the steps share */
typedef struct {
    ds_ctx *ctx;
    opts *o;
    input *in;
    ds_delta_meta layout; /* the first input's (all inputs share it) */
    ds_comm *comm;
    int n, n_dropped;     /* participants: the inputs the trust filter kept */
    int *idx;             /* their input indices */
    ds_agg_reduce how;
    resume ck;
    ds_agg_stream s;      /* over the current participants */
    const char **paths;   /* the stream's files */
    int np, *oidx;        /* the output's participants (Krum's selection) */
    int chosen;           /* krum: the chosen delta's position in s, else -1 */
    double *score;
    unsigned char *sel;
    ds_delta_entry *oes;  /* the output's entries */
    int *writer;          /* each entry's writing rank */
    int64_t total;        /* the output's coordinates */
    uint64_t *kept;       /* coordinates kept per output participant (this rank's count) */
    char content[65], version[65];
    int n_used;
    ds_merge mg;          /* merging methods */
    ds_merge_thr *thr;    /* TIES's thresholds (tensors x participants) */
    ds_merge wsum;        /* robust methods: the output as a weighted sum of the inputs */
    double *coef;         /* its coefficients (or NNM's shares), reported as weights; NULL: kept counts */
    double *mixm;         /* NNM: the mixed deltas' coefficients */
} run;

static int is_krum(const opts *o) { return o->m == M_KRUM || o->m == M_MULTIKRUM; }

/* ds_agg_stop_fn (collective), at a tensor boundary: did the ranks agree to
 * stop there (a signal, with --checkpoint)? */
static int stop_here(void *arg, int next)
{
    run *r = arg;
    if (!ds_ctx_any_failed(r->ctx, ds_ckpt_stop_requested() != 0)) return 0;
    r->ck.stopped = 1;
    r->ck.next = next;
    return 1;
}

/* Collective: the run's buffers; where the checkpoint lives and whether
 * one is there. */
static void run_init(run *r, ds_ctx *ctx, opts *o)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->o = o;
    r->in = ds_calloc((size_t)o->n_in, sizeof(input));
    r->idx = ds_malloc(sizeof(int) * (size_t)o->n_in);
    r->oidx = ds_malloc(sizeof(int) * (size_t)o->n_in);
    r->paths = ds_malloc(sizeof(char *) * (size_t)o->n_in);
    r->score = ds_malloc(sizeof(double) * (size_t)o->n_in + 1);
    r->sel = ds_malloc((size_t)o->n_in + 1);
    r->chosen = -1;
    r->ck.on = o->ckpt != NULL;
    if (!r->ck.on) return;
    snprintf(r->ck.path, sizeof r->ck.path, "%s/%s", o->ckpt, CKPT_FILE);
    r->ck.exists = ctx->rank == 0 && access(r->ck.path, F_OK) == 0;
    MPI_Bcast(&r->ck.exists, 1, MPI_INT, 0, ctx->comm);
}

static void run_free(run *r)
{
    ds_ckpt_free(r->ck.rec);
    ds_ckpt_free(r->ck.saved);
    ds_agg_stream_free(&r->s);
    ds_comm_free(r->comm);
    free(r->in), free(r->idx), free(r->oidx), free(r->paths), free(r->score), free(r->sel);
    free(r->layout.entries), free(r->oes), free(r->writer), free(r->kept), free(r->thr), free(r->coef), free(r->mixm);
}

/* Collective: refuse an existing output or report before any work (exit 4;
 * --overwrite replaces them). A checkpoint's partial output is NAME.tmp:
 * when there is a checkpoint to resume, it is kept, not removed as stale. */
static int outputs_begin(const run *r)
{
    const ds_ctx *ctx = r->ctx;
    const opts *o = r->o;
    /* no output is an input or the other output (io/outfile.h) */
    const char *outs[2] = {o->out, o->report};
    const char **ins = ds_malloc(sizeof(char *) * (size_t)(o->n_in + 2));
    for (int k = 0; k < o->n_in; k++) ins[k] = o->in[k];
    ins[o->n_in] = o->list;
    ins[o->n_in + 1] = o->keys;
    int rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 2, ins, o->n_in + 2));
    free(ins);
    if (rc) return rc;
    if (!r->ck.exists) rc = ds_out_begin(ctx, o->out, o->overwrite);
    else
        rc = ds_ctx_agree(ctx, ctx->rank == 0 && !o->overwrite && ds_file_exists(o->out)
                                   ? ds_err(DS_EXIT_OUTPUT, "%s: output exists (use --overwrite to replace it)", o->out)
                                   : 0);
    if (!rc && o->report) rc = ds_out_begin(ctx, o->report, o->overwrite);
    return rc;
}

/* Collective: the inputs, the trust filter, the counts, the checkpoint. */
static int run_prepare(run *r)
{
    ds_ctx *ctx = r->ctx;
    opts *o = r->o;
    int rc = outputs_begin(r);
    if (!rc) rc = read_inputs(ctx, o, r->in, &r->layout);
    if (!rc) rc = ds_comm_init(&r->comm, ctx, (ds_comm_backend)o->comm);
    if (!rc) rc = trust_filter(ctx, r->comm, o, r->in, &r->layout);
    if (!rc) rc = ds_ctx_agree(ctx, dedup_filter(o, r->in, ctx->rank == 0));
    for (int k = 0; k < o->n_in; k++) {
        if (r->in[k].dropped) r->n_dropped++;
        else r->idx[r->n++] = k;
    }
    int select = 0;
    if (!rc) rc = ds_ctx_agree(ctx, check_counts(o, r->n, r->n_dropped, ctx->rank == 0, &r->how, &select));
    if (rc) return rc;
    o->select = select;
    r->np = r->n;
    memcpy(r->oidx, r->idx, sizeof(int) * (size_t)r->n);
    /* Resume, or start from the first tensor. The record needs the
     * participants and --select. */
    if (!r->ck.on) return 0;
    r->ck.rec = ckpt_record(o, r->in, r->n, r->idx);
    rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(o->ckpt) : 0);
    return rc ? rc : ckpt_restore(ctx, &r->ck, o, r->layout.n);
}

/* Collective: stream the np inputs which[] (replacing the current stream). */
static int stream_open(run *r, int np, const int *which)
{
    ds_agg_stream_free(&r->s);
    for (int p = 0; p < np; p++) r->paths[p] = r->in[which[p]].path;
    return ds_agg_stream_init(&r->s, r->ctx, r->comm, np, r->paths, &r->layout, r->o->chunk_mb);
}

/* Collective: Krum's scores and selection (resumed, or from the distances),
 * which choose the output's participants. */
static int run_krum(run *r)
{
    const int n = r->n;
    resume *ck = &r->ck;
    double *d = ds_calloc((size_t)n * (size_t)n + 1, sizeof(double));
    int rc = 0;
    if (ck->saved && ck->phase == 1) {
        rc = ckpt_get_krum(r->ctx, ck, n, r->score, r->sel);
    } else {
        if (ck->saved) rc = ckpt_get_distances(r->ctx, ck, n, d);
        if (!rc)
            rc = ds_agg_stream_distances(&r->s, &r->layout, ck->saved ? ck->next : 0, d, ck->on ? stop_here : NULL, r);
        if (!rc && ck->stopped) {
            ck->phase = 0;
            rc = ckpt_save(r->ctx, ck, n, d, NULL, NULL, 0, NULL);
        } else if (!rc) {
            ds_agg_krum_scores((size_t)n, d, (size_t)r->o->f, r->score);
            ds_agg_krum_select((size_t)n, r->score, (size_t)r->o->select, r->sel);
        }
    }
    free(d);
    if (rc || ck->stopped) return rc;
    r->np = 0;
    for (int p = 0; p < n; p++) {
        r->in[r->idx[p]].score = r->score[p];
        if (!r->sel[p]) continue;
        if (r->o->m == M_KRUM) r->chosen = p; /* its position in the stream */
        r->oidx[r->np++] = r->idx[p];
    }
    return r->o->m == M_MULTIKRUM ? stream_open(r, r->np, r->oidx) : 0;
}

/* Collective: the merging methods' parameters (mergekit's defaults: only
 * ties normalizes) and TIES's thresholds. */
static int run_merge_plan(run *r)
{
    const opts *o = r->o;
    static const ds_merge_kind kinds[] = {[M_TA] = DS_MERGE_TA, [M_TIES] = DS_MERGE_TIES,
                                          [M_DARE_TIES] = DS_MERGE_DARE_TIES, [M_DARE_LINEAR] = DS_MERGE_DARE_LINEAR};
    r->mg = (ds_merge){.kind = kinds[o->m], .density = o->density, .lambda = o->lambda, .seed = (uint64_t)o->seed,
                       .normalize = o->m == M_TIES, .w = NULL};
    r->how.merge = &r->mg;
    if (o->m != M_TIES) return 0;
    r->thr = ds_malloc(sizeof(ds_merge_thr) * (size_t)r->np * (size_t)(r->layout.n + 1));
    r->how.thr = r->thr;
    return ds_agg_stream_thresholds(&r->s, &r->layout, o->density, r->thr);
}

/* ---- the robust aggregators on the Gram matrix (src/robust.h) */
static int needs_gram(const opts *o) { return o->pre || o->m == M_GM || o->m == M_CC || o->m == M_BULYAN; }

/* coef = c^T cur (cur: m x n rows of coefficients over the n inputs). */
static void coef_of(size_t m, size_t n, const double *c, const double *cur, double *coef)
{
    for (size_t j = 0; j < n; j++) coef[j] = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) coef[j] += c[i] * cur[i * n + j];
}

/* The current deltas (the inputs, or NNM's mixes) chosen or combined. */
static int robust_choose(run *r, size_t n, const double *cur, const double *gc, const double *dc)
{
    const opts *o = r->o;
    double *c = ds_calloc(n + 1, sizeof(double));
    unsigned char *sel = ds_calloc(n + 1, 1);
    int rc = 0;
    if (o->m == M_GM) {
        double obj;
        const int it = ds_rob_geomed(n, gc, 1e-6, o->tol, o->max_iter, c, &obj);
        ds_printf0(r->ctx, "[aggregate] geometric median: %d Weiszfeld update(s), objective %.9g\n", it, obj);
    } else if (o->m == M_CC) {
        ds_rob_cclip(n, gc, o->tau, o->iters, c);
    } else if (is_krum(o)) {
        ds_agg_krum_scores(n, dc, (size_t)o->f, r->score);
        ds_agg_krum_select(n, r->score, (size_t)o->select, sel);
        for (size_t p = 0; p < n; p++) {
            r->in[r->idx[p]].score = r->score[p];
            c[p] = sel[p] ? 1.0 / (double)o->select : 0;
        }
    } else if (o->m == M_BULYAN) {
        /* Krum selects theta = n - 2f: the lowest scores (as multi-krum) */
        const size_t theta = n - 2 * (size_t)o->f;
        size_t k = 0;
        ds_agg_krum_scores(n, dc, (size_t)o->f, r->score);
        ds_agg_krum_select(n, r->score, theta, sel);
        for (size_t p = 0; p < n; p++) r->in[r->idx[p]].score = r->score[p];
        r->how.bulyan_beta = theta - 2 * (size_t)o->f;
        if (!o->pre) { /* the selected inputs, in input order */
            r->np = 0;
            for (size_t p = 0; p < n; p++)
                if (sel[p]) r->oidx[r->np++] = r->idx[p];
            rc = stream_open(r, r->np, r->oidx);
        } else {
            r->mixm = ds_malloc(sizeof(double) * theta * n + 8);
            for (size_t p = 0; p < n; p++)
                if (sel[p]) memcpy(r->mixm + k++ * n, cur + p * n, sizeof(double) * n);
            r->how.mix = r->mixm, r->how.nmix = theta;
            r->coef = ds_calloc(n + 1, sizeof(double));
            for (size_t i = 0; i < theta; i++) c[i] = 1.0 / (double)theta;
            coef_of(theta, n, c, r->mixm, r->coef);
        }
    } else if (o->m == M_MEAN) {
        for (size_t p = 0; p < n; p++) c[p] = 1.0 / (double)n;
    } else { /* a per-coordinate method on NNM's mixes */
        r->mixm = ds_malloc(sizeof(double) * n * n + 8);
        memcpy(r->mixm, cur, sizeof(double) * n * n);
        r->how.mix = r->mixm, r->how.nmix = n;
        for (size_t p = 0; p < n; p++) c[p] = 1.0 / (double)n;
        r->coef = ds_calloc(n + 1, sizeof(double));
        coef_of(n, n, c, cur, r->coef);
    }
    if (o->m == M_GM || o->m == M_CC || is_krum(o) || o->m == M_MEAN) {
        r->coef = ds_calloc(n + 1, sizeof(double));
        coef_of(n, n, c, cur, r->coef);
        r->wsum = (ds_merge){.kind = DS_MERGE_TA, .density = 1, .lambda = 1, .w = r->coef};
        r->how.merge = &r->wsum;
        r->how.k = 0;
    }
    free(c);
    free(sel);
    return rc;
}

/* Collective: D and the norms (one pass), the Gram matrix, NNM's mixes,
 * then the method's choice (the output pass follows). */
static int run_robust(run *r)
{
    const size_t n = (size_t)r->n, nn = n * n;
    double *d = ds_calloc(nn + 1, sizeof(double)), *norm2 = ds_calloc(n + 1, sizeof(double));
    int rc = ds_agg_stream_gram(&r->s, &r->layout, d, norm2);
    if (rc) {
        free(d), free(norm2);
        return rc;
    }
    double *g = ds_malloc(sizeof(double) * nn + 8), *cur = ds_calloc(nn + 1, sizeof(double));
    double *gc = ds_malloc(sizeof(double) * nn + 8), *dc = ds_calloc(nn + 1, sizeof(double));
    ds_rob_gram(n, d, norm2, g);
    for (size_t i = 0; i < n; i++) /* D in full, as summed (not through G) */
        for (size_t j = i + 1; j < n; j++) dc[i * n + j] = dc[j * n + i] = d[i * n + j];
    if (r->o->pre) {
        ds_rob_nnm(n, dc, (size_t)r->o->f, cur);
        ds_rob_mix_gram(n, n, cur, g, gc);
        ds_rob_dist(n, gc, dc);
    } else {
        for (size_t i = 0; i < n; i++) cur[i * n + i] = 1;
        memcpy(gc, g, sizeof(double) * nn);
    }
    rc = robust_choose(r, n, cur, gc, dc);
    free(d), free(norm2), free(g), free(cur), free(gc), free(dc);
    return rc;
}

/* The output's entries, each tensor's writer (by size), its metadata. */
static void output_plan(run *r, ds_delta_meta *om)
{
    const ds_delta_meta *l = &r->layout;
    const opts *o = r->o;
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(l->n + 1));
    r->oes = ds_malloc(sizeof(ds_delta_entry) * (size_t)(l->n + 1));
    r->writer = ds_malloc(sizeof(int) * (size_t)(l->n + 1));
    r->kept = ds_calloc((size_t)r->np + 1, sizeof(uint64_t));
    for (int i = 0; i < l->n; i++) {
        out_entry(o, &l->entries[i], &r->oes[i]);
        sizes[i] = ds_tinfo_numel(&r->oes[i].t);
        r->total += sizes[i];
    }
    ds_shard_by_size(l->n, sizes, r->ctx->size, r->writer);
    free(sizes);
    *om = *l;
    om->entries = r->oes;
    om->content_sha256[0] = 0;
    snprintf(om->base_sha256, sizeof om->base_sha256, "%s", r->in[r->oidx[0]].base);
    snprintf(om->owner, sizeof om->owner, "deltasoup-aggregate");
    snprintf(om->scale_fit, sizeof om->scale_fit, "aggregate:%s", method_names[o->m]);
    /* each contributor's budget still holds for its data: report the largest */
    om->has_dp = 1;
    om->dp_epsilon = om->dp_delta = 0;
    for (int k = 0; k < o->n_in; k++) {
        const input *x = &r->in[k];
        if (x->dropped) continue;
        om->has_dp &= x->has_dp;
        if (x->eps > om->dp_epsilon) om->dp_epsilon = x->eps;
        if (x->dlt > om->dp_delta) om->dp_delta = x->dlt;
    }
}

/* Collective: the digests of the staged tensors [0, n) of NAME.tmp (suspended)
 * into the checkpoint's record on rank 0 ("staged_sha256", n x 32 bytes as
 * U64), so that a resume can tell the partial output was not changed. */
static int staged_save(run *r, int n)
{
    char part[4200];
    ds_out_tmpname(r->o->out, part, sizeof part);
    unsigned char *dig = ds_calloc((size_t)n * 32 + 8, 1);
    int rc = ds_agg_staged_digests(r->ctx, part, r->oes, n, dig);
    if (!rc && r->ctx->rank == 0) ds_ckpt_put_array(r->ck.rec, "staged_sha256", DS_DTYPE_U64, (int64_t)n * 4, dig);
    free(dig);
    return rc;
}

/* Collective: the staged tensors [0, start) of the partial output still have
 * the digests the checkpoint kept (exit 3 naming the first that differs). */
static int staged_verify(const run *r, int start, const char *part)
{
    const ds_ctx *ctx = r->ctx;
    unsigned char *want = ds_calloc((size_t)start * 32 + 8, 1), *have = ds_calloc((size_t)start * 32 + 8, 1);
    int rc = ds_ctx_agree(ctx, ds_ckpt_get_array(r->ck.saved, "staged_sha256", DS_DTYPE_U64, (int64_t)start * 4, want));
    if (!rc) rc = ds_agg_staged_digests(ctx, part, r->oes, start, have);
    for (int i = 0; i < start && !rc; i++)
        if (memcmp(want + (size_t)i * 32, have + (size_t)i * 32, 32) != 0)
            rc = ds_err(DS_EXIT_INPUT,
                        "%s: tensor %s of the partial output %s changed since the checkpoint (SHA-256 differs; "
                        "remove %s to start over)", r->ck.path, r->oes[i].t.name, part, r->o->ckpt);
    free(want);
    free(have);
    return ds_ctx_agree(ctx, rc);
}

/* Collective: create the output (staged as NAME.tmp), or reopen the partial
 * NAME.tmp of a checkpoint of the output pass, whose tensors before start
 * are written (r->kept gets their counts, on rank 0). */
static int output_open(run *r, const ds_delta_meta *om, int start, ds_delta_file **out)
{
    const ds_ctx *ctx = r->ctx;
    const opts *o = r->o;
    const resume *ck = &r->ck;
    if (start == 0) return ds_delta_create(o->out, ctx->comm, om, o->overwrite, out);
    int rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_get_array(ck->saved, "kept", DS_DTYPE_U64, r->np, r->kept) : 0);
    char part[4200];
    ds_out_tmpname(o->out, part, sizeof part);
    if (!rc)
        rc = ds_ctx_agree(ctx, ctx->rank == 0 && !ds_h5_is_hdf5(part)
                                   ? ds_err(DS_EXIT_INPUT, "%s: the partial output %s of this checkpoint is missing or "
                                                           "not HDF5 (remove %s to start over)", ck->path, part, o->ckpt)
                                   : 0);
    if (!rc) rc = staged_verify(r, start, part);
    if (!rc && (rc = ds_delta_resume(o->out, ctx->comm, om, start, r->writer, out)) && ctx->rank == 0)
        fprintf(stderr, "deltasoup aggregate: %s: cannot resume (remove %s to start over)\n", ck->path, o->ckpt);
    return rc;
}

/* Collective: the output's tensors (Krum: the chosen delta's), committed in
 * NAME.tmp for the provenance; or, when the ranks agreed to stop, the
 * partial NAME.tmp suspended and the checkpoint saved. */
static int run_output(run *r)
{
    ds_delta_meta om;
    output_plan(r, &om);
    const int start = r->ck.saved && r->ck.phase == 1 ? r->ck.next : 0;
    ds_delta_file *out = NULL;
    int rc = output_open(r, &om, start, &out);
    if (rc) return rc;
    int wrc;
    if (r->chosen >= 0) {
        wrc = ds_agg_stream_copy(&r->s, &r->layout, r->chosen, out);
        r->kept[0] = r->ctx->rank == 0 ? (uint64_t)r->total : 0; /* summed over ranks later */
    } else {
        wrc = ds_agg_stream_reduce(&r->s, &r->layout, r->oes, r->writer, &r->how, out, r->kept, start,
                                   r->ck.on ? stop_here : NULL, r);
    }
    if (!r->ck.stopped) return ds_delta_commit_staged(out, ds_ctx_agree(r->ctx, wrc), NULL, r->content);
    /* every rank's wrc is 0 here: the ranks agree to stop only when all are fine */
    r->ck.phase = 1;
    rc = ds_delta_suspend(out);
    if (!rc) rc = staged_save(r, r->ck.next);
    if (!rc) rc = ckpt_save(r->ctx, &r->ck, r->n, NULL, is_krum(r->o) ? r->score : NULL, r->sel, r->np, r->kept);
    return rc;
}

/* Collective: weights from the kept counts, the provenance into NAME.tmp,
 * NAME.tmp into place, the report. */
static int run_finish(run *r)
{
    const ds_ctx *ctx = r->ctx;
    const opts *o = r->o;
    /* --report's anomaly report over every participant (docs/scan.md), before
     * anything is put in place: a failure leaves no output */
    json_t *scan = NULL;
    if (o->report && r->n >= 3) {
        for (int p = 0; p < r->n; p++) r->paths[p] = r->in[r->idx[p]].path;
        int rc = ds_scan_report(ctx, r->comm, r->n, (const char *const *)r->paths, &r->layout, o->chunk_mb, &scan);
        if (rc) return rc;
    }
    /* integer counts < 2^53: the sum of doubles is exact */
    double *kd = ds_malloc(sizeof(double) * ((size_t)r->np + 1)), sum = 0;
    for (int p = 0; p < r->np; p++) kd[p] = (double)r->kept[p];
    ds_comm_allreduce_sum_f64(r->comm, kd, kd, (size_t)r->np);
    for (int p = 0; p < r->np; p++) sum += kd[p];
    for (int p = 0; p < r->np; p++) {
        input *x = &r->in[r->oidx[p]];
        x->kept_frac = r->total ? kd[p] / (double)r->total : 0;
        x->weight = r->coef ? r->coef[p] : sum > 0 ? kd[p] / sum : 0;
        r->n_used += x->weight > 0;
    }
    free(kd);
    version_hash(o, r->in, r->version);
    char stage[4200];
    ds_out_tmpname(o->out, stage, sizeof stage);
    int rc = ds_out_finish(ctx, o->out, ctx->rank == 0 ? write_provenance(stage, o, r->in, r->version, r->n_used) : 0);
    if (rc) {
        json_decref(scan);
        return rc;
    }
    json_t *rep = report_json(o, r->in, r->version, r->content, r->in[r->oidx[0]].base, r->n_used);
    if (scan) json_object_set_new(rep, "deltas", scan);
    if (o->report) rc = ds_out_write_json(ctx, o->report, rep, JSON_INDENT(2) | JSON_SORT_KEYS, 0);
    json_decref(rep);
    return rc;
}

/* Collective: the table and summary (rank 0); a finished run's checkpoint
 * folder is removed, so that a later run with it starts over. */
static void run_report(const run *r, double t0)
{
    const ds_ctx *ctx = r->ctx;
    const opts *o = r->o;
    print_table(ctx, o, r->in);
    char el[32];
    ds_printf0(ctx, "wrote %s: %s of %d deltas (%d used, %d dropped)\ncontent_sha256: %s\nversion_sha256: %s\n", o->out,
               method_names[o->m], o->n_in, r->n_used, r->n_dropped, r->content, r->version);
    double rss = (double)ds_peak_rss(), maxrss;
    MPI_Allreduce(&rss, &maxrss, 1, MPI_DOUBLE, MPI_MAX, ctx->comm);
    ds_printf0(ctx, "time: %s on %d rank(s), peak RSS per rank %.1f MB\n", ds_fmt_duration(ds_now() - t0, el, sizeof el),
               ctx->size, maxrss / 1e6);
    if (r->ck.on && ctx->rank == 0) {
        unlink(r->ck.path);
        rmdir(o->ckpt);
    }
}

/* Collective: the plan and its steps, after the options. */
static int aggregate(ds_ctx *ctx, opts *o)
{
    const double t0 = ds_now();
    run r;
    run_init(&r, ctx, o);
    int rc = run_prepare(&r);
    if (!rc) rc = stream_open(&r, r.n, r.idx);
    if (!rc && needs_gram(o)) rc = run_robust(&r);
    else if (!rc && is_krum(o)) rc = run_krum(&r);
    if (!rc && is_merge(o->m)) rc = run_merge_plan(&r);
    if (!rc && !r.ck.stopped) rc = run_output(&r);
    if (!rc && r.ck.stopped) {
        ds_printf0(ctx, "[aggregate] signal: checkpoint after tensor %d/%d of the %s written to %s; run again to resume\n",
                   r.ck.next, r.layout.n, r.ck.phase ? "output" : "distances", r.ck.path);
        rc = DS_EXIT_CHECKPOINTED;
    }
    if (!rc) rc = run_finish(&r);
    if (!rc) run_report(&r, t0);
    run_free(&r);
    return rc;
}

int ds_job_aggregate(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.m = -1};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    rc = gather_inputs(ctx, &o);
    /* Before the output is touched. Default cpu: no statistic runs on a GPU,
     * so none is bound unless asked for. */
    ds_dev *dev = NULL;
    if (!rc) rc = ds_dev_open(ctx, o.device ? o.device : "cpu", &dev);
    if (!rc) {
        /* With --checkpoint, SIGUSR1 (Slurm's warning before the time limit;
         * mpiexec forwards it) and SIGTERM only set a flag, read at each
         * tensor boundary. Without it they keep their default action. */
        ds_ckpt_signals saved_signals;
        if (o.ckpt) ds_ckpt_signals_catch(&saved_signals);
        rc = aggregate(ctx, &o);
        if (o.ckpt) ds_ckpt_signals_restore(&saved_signals);
    }
    ds_dev_close(dev);
    free_inputs(&o);
    ds_opts_free(&cmd, &o);
    return rc;
}
