/* deltasoup aggregate: DeltaSoup, a Byzantine-robust aggregate of many
 * BitDelta deltas (docs/aggregate.md). Orchestration only; the math is in
 * src/aggregate.c.
 *
 * Flow: every rank opens every input collectively for its layout (errors
 * print once), checks it against the first input, then the trust filter
 * runs (privacy budget; Ed25519 signatures and recomputed content hashes on
 * each rank's share of the files). Ranks own disjoint contiguous ranges of
 * the participating files. Each tensor goes in chunks of rows sized by
 * --chunk-mb: every rank reads its files' rows, an all-gather gives every
 * rank all users' rows of the chunk (packed signs + scales, or float32 dense
 * values), then
 *   - Krum: each rank adds the chunk's squared distances of its share of the
 *     user pairs (pair p goes to rank p % size), in chunk order; one
 *     all-reduce at the end, where each entry is non-zero on one rank only,
 *     so D does not depend on the number of ranks;
 *   - the output: each rank reduces its own range of the chunk's rows, an
 *     all-gather brings the rows to the tensor's writer.
 * Chunk boundaries depend on --chunk-mb, the shapes and the number of
 * participants only, so the output's content hash is the same for any number
 * of ranks. Resumable: --checkpoint DIR (src/checkpoint.h); SIGUSR1/SIGTERM
 * finish the tensor, checkpoint (the partial output is kept) and exit 75. */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_delta_rows.h"
#include "src/aggregate.h"
#include "src/bitdelta.h"
#include "src/checkpoint.h"
#include "src/comm.h"
#include "src/device_ops.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "src/shard.h"
#include "src/sign.h"

#define CKPT_FILE "aggregate.ckpt"

typedef enum { M_MEAN, M_MEDIAN, M_TRIMMED, M_KRUM, M_MULTIKRUM, M_MAJORITY } method;
static const char *const method_names[] = {"mean", "median", "trimmed-mean", "krum", "multi-krum", "majority"};

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup aggregate --method M -o REF.bd.h5 [options] D1.bd.h5 D2.bd.h5 ...\n"
               "Aggregate many users' deltas (same base, tensors and coding) into one reference delta\n"
               "with a Byzantine-robust method; 1-bit inputs are never expanded (docs/aggregate.md).\n\n"
               "  --method M          mean | median | trimmed-mean | krum | multi-krum | majority\n"
               "  -o, --output REF    delta file to write, with provenance (contributors, weights)\n"
               "  --trim T            trimmed-mean: drop floor(T n) lowest and highest values per\n"
               "                      coordinate; majority: trim of the users' scales (default 0.1)\n"
               "  --byzantine F       krum, multi-krum: tolerated bad deltas (default 0; n >= 2F + 3)\n"
               "  --select M          multi-krum: average the M best-scored deltas (default n - F)\n"
               "  --requantize        mean, median, trimmed-mean, multi-krum: store 1-bit tensors as\n"
               "                      sign + mean |x| scale (else as float32 dense deltas)\n"
               "  --list FILE         more inputs, one path per line ('#' comments)\n"
               "  --report R.json     write the provenance and the table as JSON\n"
               "  --chunk-mb N        MiB for one chunk of all users' rows (default 256; fractions ok)\n"
               "  --checkpoint DIR    keep resumable state in DIR; a run with the same DIR resumes\n"
               "  --max-dp-epsilon E  drop deltas whose dp_epsilon is missing or above E\n"
               "  --trusted-keys FILE drop deltas not signed by a key in FILE (`deltasoup sign`)\n"
               "  --force             aggregate deltas made for different bases (warns)\n"
               "  --device DEV        cpu (default) or cuda: cuda binds one GPU per rank, for --comm\n"
               "                      nccl; the statistics run on the CPU either way (docs/gpu.md)\n"
               "  --comm C            mpi (default) or nccl: the all-gathers of the chunks (nccl needs\n"
               "                      --device cuda and one GPU per rank)\n"
               "  --overwrite         replace an existing output and report\n"
               "  --quiet             no progress lines\n"
               "  -h, --help          this help\n\n"
               "With --checkpoint, SIGUSR1 or SIGTERM makes every rank finish the current tensor, write a\n"
               "checkpoint (the finished tensors are kept) and exit with code 75; running the same command\n"
               "again continues and ends with the same output as an uninterrupted run.\n");
}

typedef struct {
    method m;
    const char *out, *report, *list, *keys, *device, *ckpt;
    ds_comm_backend comm;
    double trim, max_eps, chunk_mb;
    long f, select;
    int trim_set, f_set, select_set, requantize, overwrite, force, has_max_eps;
    int n_in;
    char **in;
} opts;

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
        o->in = ds_realloc(o->in, sizeof(char *) * (size_t)(o->n_in + 1));
        o->in[o->n_in++] = ds_strdup(line);
    }
    free(text);
    return 0;
}

static int parse(ds_ctx *ctx, int argc, char **argv, opts *o)
{
    enum { O_METHOD = 256, O_TRIM, O_BYZ, O_SELECT, O_REQ, O_LIST, O_REPORT, O_CHUNK, O_EPS, O_KEYS, O_FORCE, O_OVER, O_QUIET,
           O_DEVICE, O_COMM, O_CKPT };
    static const struct option lo[] = {
        {"method", required_argument, 0, O_METHOD},  {"output", required_argument, 0, 'o'},
        {"trim", required_argument, 0, O_TRIM},      {"byzantine", required_argument, 0, O_BYZ},
        {"select", required_argument, 0, O_SELECT},  {"requantize", no_argument, 0, O_REQ},
        {"list", required_argument, 0, O_LIST},      {"report", required_argument, 0, O_REPORT},
        {"chunk-mb", required_argument, 0, O_CHUNK}, {"max-dp-epsilon", required_argument, 0, O_EPS},
        {"trusted-keys", required_argument, 0, O_KEYS}, {"force", no_argument, 0, O_FORCE},
        {"overwrite", no_argument, 0, O_OVER},       {"quiet", no_argument, 0, O_QUIET},
        {"device", required_argument, 0, O_DEVICE},  {"comm", required_argument, 0, O_COMM},
        {"checkpoint", required_argument, 0, O_CKPT}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->m = (method)-1;
    o->trim = 0.1;
    o->chunk_mb = 256;
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case O_METHOD:
            for (int i = 0; i < 6; i++)
                if (strcmp(optarg, method_names[i]) == 0) o->m = (method)i;
            if ((int)o->m < 0)
                rc = ds_err(DS_EXIT_USAGE, "--method '%s': expected mean, median, trimmed-mean, krum, multi-krum or majority", optarg);
            break;
        case 'o': o->out = optarg; break;
        case O_TRIM: rc = ds_parse_double("--trim", optarg, 0.0, 0.5, &o->trim), o->trim_set = 1; break;
        case O_BYZ: rc = ds_parse_int("--byzantine", optarg, 0, 1 << 20, &o->f), o->f_set = 1; break;
        case O_SELECT: rc = ds_parse_int("--select", optarg, 1, 1 << 20, &o->select), o->select_set = 1; break;
        case O_REQ: o->requantize = 1; break;
        case O_LIST: o->list = optarg; break;
        case O_REPORT: o->report = optarg; break;
        case O_CHUNK: rc = ds_parse_double("--chunk-mb", optarg, 1.0 / 1024, 1 << 24, &o->chunk_mb); break;
        case O_EPS: rc = ds_parse_double("--max-dp-epsilon", optarg, 0.0, INFINITY, &o->max_eps), o->has_max_eps = 1; break;
        case O_KEYS: o->keys = optarg; break;
        case O_FORCE: o->force = 1; break;
        case O_OVER: o->overwrite = 1; break;
        case O_QUIET: ctx->quiet = 1; break;
        case O_DEVICE: o->device = optarg; break;
        case O_COMM: rc = ds_comm_backend_parse(optarg, &o->comm); break;
        case O_CKPT: o->ckpt = optarg; break;
        case 'h': return -1;
        case ':': rc = ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]); break;
        default: rc = ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]); break;
        }
    }
    if (rc) return rc;
    if ((int)o->m < 0) return ds_err(DS_EXIT_USAGE, "--method is required (see --help)");
    if (!o->out) return ds_err(DS_EXIT_USAGE, "-o REF.bd.h5 is required");
    if (o->trim >= 0.5) return ds_err(DS_EXIT_USAGE, "--trim %g: must be below 0.5", o->trim);
    if (o->trim_set && o->m != M_TRIMMED && o->m != M_MAJORITY)
        return ds_err(DS_EXIT_USAGE, "--trim applies to trimmed-mean and majority, not %s", method_names[o->m]);
    if (o->f_set && o->m != M_KRUM && o->m != M_MULTIKRUM)
        return ds_err(DS_EXIT_USAGE, "--byzantine applies to krum and multi-krum, not %s", method_names[o->m]);
    if (o->select_set && o->m != M_MULTIKRUM) return ds_err(DS_EXIT_USAGE, "--select applies to multi-krum only");
    if (o->comm == DS_COMM_NCCL && (!o->device || strcmp(o->device, "cuda") != 0))
        return ds_err(DS_EXIT_USAGE, "--comm nccl needs --device cuda (one GPU per rank)");
    if (o->requantize && (o->m == M_KRUM || o->m == M_MAJORITY))
        return ds_err(DS_EXIT_USAGE, "--requantize: %s already gives 1-bit tensors", method_names[o->m]);
    for (int i = optind; i < argc; i++) {
        o->in = ds_realloc(o->in, sizeof(char *) * (size_t)(o->n_in + 1));
        o->in[o->n_in++] = ds_strdup(argv[i]);
    }
    if (o->list && (rc = add_list(o, o->list))) return rc;
    if (o->n_in == 0) return ds_err(DS_EXIT_USAGE, "no input deltas (see --help)");
    return 0;
}

/* ---- inputs */
typedef struct {
    const char *path;
    char owner[DS_NAME_MAX], content[65], base[65];
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

/* One file's signature check (this rank): "" when trusted, else the reason. */
static int trust_check(const input *x, const ds_delta_meta *layout, const ds_trusted_key *keys, int nkeys, char *reason, size_t n)
{
    char sig_hex[129], pk_hex[65];
    int present;
    reason[0] = 0;
    int rc = ds_delta_sig_read(x->path, sig_hex, pk_hex, &present);
    if (rc) return rc;
    unsigned char sig[DS_SIGN_SIG], pk[DS_SIGN_PK];
    if (!present) {
        snprintf(reason, n, "unsigned");
        return 0;
    }
    if (ds_sign_decode(sig_hex, sig, DS_SIGN_SIG) != 0 || ds_sign_decode(pk_hex, pk, DS_SIGN_PK) != 0) {
        snprintf(reason, n, "malformed signature attributes");
        return 0;
    }
    int known = 0, owner_ok = 0;
    for (int i = 0; i < nkeys; i++)
        if (memcmp(keys[i].pk, pk, DS_SIGN_PK) == 0) {
            known = 1;
            owner_ok |= !keys[i].owner[0] || strcmp(keys[i].owner, x->owner) == 0;
        }
    if (!known) {
        snprintf(reason, n, "signer %.16s... is not a trusted key", pk_hex);
        return 0;
    }
    if (!owner_ok) {
        snprintf(reason, n, "key %.16s... is not trusted for owner '%.120s'", pk_hex, x->owner);
        return 0;
    }
    char msg[1024];
    size_t len = ds_sign_statement(x->content, x->base, x->owner, x->has_dp, x->eps, x->dlt, msg, sizeof msg);
    if (ds_sign_verify(pk, msg, len, sig) != 0) {
        snprintf(reason, n, "bad signature");
        return 0;
    }
    ds_delta_rows *r;
    char hex[65];
    rc = ds_delta_rows_open(x->path, &r);
    if (!rc) rc = ds_delta_rows_content_hash(r, layout->n, layout->entries, hex);
    ds_delta_rows_close(r);
    if (!rc && strcmp(hex, x->content) != 0)
        snprintf(reason, n, "data changed after signing (content hash %.16s... != signed %.16s...)", hex, x->content);
    return rc;
}

/* Collective: the trust filter. Marks in[k].dropped with a reason. */
static int trust_filter(ds_ctx *ctx, ds_comm *comm, const opts *o, input *in, const ds_delta_meta *layout)
{
    for (int k = 0; k < o->n_in && o->has_max_eps; k++) {
        input *x = &in[k];
        if (!x->has_dp) snprintf(x->reason, sizeof x->reason, "no recorded privacy budget (dp_epsilon)");
        else if (!(x->eps <= o->max_eps))
            snprintf(x->reason, sizeof x->reason, "dp_epsilon %g > --max-dp-epsilon %g", x->eps, o->max_eps);
        x->dropped = x->reason[0] != 0;
    }
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
    typedef struct { int32_t dropped; char reason[196]; } verdict;
    verdict *send = ds_calloc((size_t)(maxloc ? maxloc : 1), sizeof(verdict));
    verdict *all = ds_calloc((size_t)ctx->size * (size_t)(maxloc ? maxloc : 1), sizeof(verdict));
    for (int64_t k = lo; k < hi && !rc; k++) {
        verdict *v = &send[k - lo];
        if (in[k].dropped) continue;
        rc = trust_check(&in[k], layout, keys, nkeys, v->reason, sizeof v->reason);
        v->dropped = v->reason[0] != 0;
    }
    free(keys);
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) {
        ds_comm_allgather(comm, send, all, sizeof(verdict) * (size_t)maxloc);
        for (int r = 0; r < ctx->size; r++) {
            int64_t a, b;
            ds_shard_range(o->n_in, r, ctx->size, &a, &b);
            for (int64_t k = a; k < b; k++) {
                const verdict *v = &all[(size_t)r * (size_t)maxloc + (size_t)(k - a)];
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

/* ---- streaming chunks of rows of all participants */
typedef struct {
    ds_ctx *ctx;
    ds_comm *comm;
    int np;                 /* participants */
    const int *idx;         /* their input indices */
    input *in;
    int64_t lo, hi;         /* this rank's participants [lo, hi) */
    int maxloc;             /* most participants on one rank */
    ds_delta_rows **rd;     /* readers of this rank's participants */
    size_t budget, slot_cap;
    unsigned char *send, *recv;
    /* the current chunk: pointers into recv, one per participant */
    const uint64_t **bits;
    const float **scale, **dense;
} stream;

static size_t row_bytes(const ds_delta_entry *e)
{
    if (e->coded) return (size_t)e->words_per_row * 8 + (e->mode == DS_SCALE_ROW ? 4 : 0);
    return (size_t)ds_delta_row_elems(&e->t) * 4;
}

/* Rows per chunk: from the budget and the number of participants only. */
static int64_t chunk_rows(const stream *s, const ds_delta_entry *e)
{
    int64_t n = ds_delta_nrows(e), r = (int64_t)(s->budget / ((size_t)s->np * row_bytes(e)));
    return r < 1 ? 1 : r > n ? n : r;
}

static size_t n_scales(const ds_delta_entry *e, int64_t rows)
{
    return e->mode == DS_SCALE_ROW ? (size_t)rows : e->mode == DS_SCALE_COL ? (size_t)e->cols : 1;
}

static size_t slot_bytes(const ds_delta_entry *e, int64_t rows)
{
    if (!e->coded) return (size_t)rows * (size_t)ds_delta_row_elems(&e->t) * 4;
    size_t b = (size_t)rows * (size_t)e->words_per_row * 8 + n_scales(e, rows) * 4;
    return (b + 7) & ~(size_t)7;
}

static int stream_init(stream *s, ds_ctx *ctx, ds_comm *comm, input *in, int np, const int *idx, const ds_delta_meta *layout,
                       double chunk_mb)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->comm = comm;
    s->in = in;
    s->np = np;
    s->idx = idx;
    s->budget = (size_t)(chunk_mb * (1 << 20));
    ds_shard_range(np, ctx->rank, ctx->size, &s->lo, &s->hi);
    s->maxloc = (np + ctx->size - 1) / ctx->size;
    for (int i = 0; i < layout->n; i++) {
        size_t b = slot_bytes(&layout->entries[i], chunk_rows(s, &layout->entries[i]));
        if (b > s->slot_cap) s->slot_cap = b;
    }
    s->send = ds_malloc(s->slot_cap * (size_t)s->maxloc + 1);
    s->recv = ds_malloc(s->slot_cap * (size_t)s->maxloc * (size_t)ctx->size + 1);
    s->bits = ds_malloc(sizeof(void *) * (size_t)np);
    s->scale = ds_malloc(sizeof(void *) * (size_t)np);
    s->dense = ds_malloc(sizeof(void *) * (size_t)np);
    s->rd = ds_calloc((size_t)(s->hi - s->lo + 1), sizeof(ds_delta_rows *));
    int rc = 0;
    for (int64_t p = s->lo; p < s->hi && !rc; p++) rc = ds_delta_rows_open(in[idx[p]].path, &s->rd[p - s->lo]);
    return ds_ctx_agree(ctx, rc);
}

static void stream_free(stream *s)
{
    for (int64_t p = s->lo; p < s->hi; p++) ds_delta_rows_close(s->rd[p - s->lo]);
    free(s->rd);
    free(s->send);
    free(s->recv);
    free(s->bits);
    free(s->scale);
    free(s->dense);
}

static int check_finite(const char *path, const ds_delta_entry *e, const float *v, size_t n, const char *what)
{
    int64_t bad = ds_find_nonfinite(DS_DTYPE_F32, v, n);
    if (bad >= 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %s value %lld is not finite (%g)", path, e->t.name, what, (long long)bad,
                      (double)v[bad]);
    return 0;
}

/* Collective, quiet: whether any rank has a non-zero status (its message
 * is printed once later, by ds_ctx_agree or ds_delta_commit). */
static int any_failed(const ds_ctx *ctx, int rc)
{
    int any;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, ctx->comm);
    return any;
}

/* ---- checkpoints (docs/aggregate.md "Checkpoint and resume") */

/* Where a run stands: phase 0 is Krum's distance pass, phase 1 the output;
 * next is the first tensor of that phase not done. */
typedef struct {
    int on;           /* --checkpoint given */
    char path[4200];  /* DIR/aggregate.ckpt */
    ds_ckpt *rec;     /* the job's record */
    ds_ckpt *saved;   /* the checkpoint resumed from, or NULL */
    int phase, next;
    int stopped;      /* the ranks agreed to stop after tensor next - 1 */
} resume;

/* Collective, at a tensor boundary: did the ranks agree to stop there? */
static int stop_here(const ds_ctx *ctx, resume *ck, int next)
{
    if (!ck->on || !any_failed(ctx, ds_ckpt_stop_requested() != 0)) return 0;
    ck->stopped = 1;
    ck->next = next;
    return 1;
}

/* Collective: rows [r0, r0 + nr) of entry e of every participant into s.
 * Returns non-zero when any rank failed; *local: this rank's status. */
static int stream_chunk(stream *s, const ds_delta_entry *e, int64_t r0, int64_t nr, int *local)
{
    const size_t slot = slot_bytes(e, nr);
    int rc = 0;
    for (int64_t p = s->lo; p < s->hi && !rc; p++) {
        unsigned char *dst = s->send + (size_t)(p - s->lo) * slot;
        ds_delta_rows *r = s->rd[p - s->lo];
        const char *path = s->in[s->idx[p]].path;
        if (e->coded) {
            float *sc = (float *)(dst + (size_t)nr * (size_t)e->words_per_row * 8);
            const size_t ns = n_scales(e, nr);
            rc = ds_delta_rows_signs(r, e, r0, nr, (uint64_t *)dst);
            if (!rc) rc = ds_delta_rows_scales(r, e, e->mode == DS_SCALE_ROW ? r0 : 0, (int64_t)ns, sc);
            if (!rc) rc = check_finite(path, e, sc, ns, "scale");
        } else {
            rc = ds_delta_rows_dense(r, e, r0, nr, DS_DTYPE_F32, dst);
            if (!rc) rc = check_finite(path, e, (const float *)dst, (size_t)nr * (size_t)ds_delta_row_elems(&e->t), "delta");
        }
    }
    *local = rc;
    if (any_failed(s->ctx, rc)) return 1;
    ds_comm_allgather(s->comm, s->send, s->recv, slot * (size_t)s->maxloc);
    for (int r = 0; r < s->ctx->size; r++) {
        int64_t a, b;
        ds_shard_range(s->np, r, s->ctx->size, &a, &b);
        for (int64_t p = a; p < b; p++) {
            const unsigned char *src = s->recv + ((size_t)r * (size_t)s->maxloc + (size_t)(p - a)) * slot;
            s->bits[p] = (const uint64_t *)src;
            s->dense[p] = (const float *)src;
            s->scale[p] = (const float *)(src + (size_t)nr * (size_t)e->words_per_row * 8);
        }
    }
    return 0;
}

/* ---- Krum: squared distances between all participants */
/* From tensor start on (d holds the earlier tensors' sums); stops at a
 * tensor boundary that the ranks agree on (ck->stopped, d not all-reduced). */
static int krum_distances(stream *s, const ds_delta_meta *layout, double *d, int start, resume *ck)
{
    const int np = s->np;
    ds_progress pr;
    ds_progress_init(&pr, s->ctx, "distances", layout->n);
    int rc = 0;
    for (int i = start; i < layout->n && !rc; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        const int64_t nrows = ds_delta_nrows(e), R = chunk_rows(s, e);
        for (int64_t r0 = 0; r0 < nrows && !rc; r0 += R) {
            const int64_t nr = nrows - r0 < R ? nrows - r0 : R;
            int local;
            if (stream_chunk(s, e, r0, nr, &local)) {
                rc = ds_ctx_agree(s->ctx, local);
                break;
            }
            if (e->coded) {
                ds_agg_bits c = {(size_t)np, (size_t)nr, (size_t)e->cols, e->mode, s->bits, s->scale};
                ds_agg_dist_bits(&c, (size_t)s->ctx->rank, (size_t)s->ctx->size, d);
            } else {
                ds_agg_dist_dense((size_t)np, s->dense, (size_t)nr * (size_t)ds_delta_row_elems(&e->t), (size_t)s->ctx->rank,
                                  (size_t)s->ctx->size, d);
            }
        }
        ds_progress_step(&pr, i + 1, "%s", e->t.name);
        if (!rc && stop_here(s->ctx, ck, i + 1)) break;
    }
    if (!rc && !ck->stopped) ds_comm_allreduce_sum_f64(s->comm, d, d, (size_t)np * (size_t)np);
    return rc;
}

/* ---- the output */
static void out_entry(method m, int requantize, const ds_delta_entry *in, ds_delta_entry *o)
{
    *o = *in;
    if (!in->coded || m == M_KRUM || m == M_MAJORITY || requantize) return;
    /* a per-coordinate statistic of 1-bit values is not 1-bit: float32 dense */
    o->coded = 0;
    o->t.dtype = DS_DTYPE_F32;
    o->mode = DS_SCALE_TENSOR;
    o->words_per_row = o->n_scales = 0;
}

/* Krum's output: the chosen delta's entries as stored, copied by the rank that owns its file. */
static int copy_chosen(stream *s, const ds_delta_meta *layout, int chosen, ds_delta_file *out)
{
    if (chosen < s->lo || chosen >= s->hi) return 0;
    ds_delta_rows *r = s->rd[chosen - s->lo];
    int rc = 0;
    for (int i = 0; i < layout->n && !rc; i++) {
        const ds_delta_entry *e = &layout->entries[i];
        if (e->coded) {
            uint64_t *b = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row));
            float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales);
            rc = ds_delta_rows_signs(r, e, 0, e->rows, b);
            if (!rc) rc = ds_delta_rows_scales(r, e, 0, e->n_scales, sc);
            if (!rc) rc = ds_delta_write_signs(out, i, b);
            if (!rc) rc = ds_delta_write_scales(out, i, sc);
            free(b);
            free(sc);
        } else {
            void *buf = ds_malloc(ds_tinfo_bytes(&e->t) + 1);
            rc = ds_delta_rows_dense(r, e, 0, ds_delta_nrows(e), e->t.dtype, buf);
            if (!rc) rc = ds_delta_write_dense(out, i, buf);
            free(buf);
        }
    }
    return rc;
}

typedef struct {
    method m;
    size_t k;       /* values dropped at each end per coordinate */
    size_t k_scale; /* majority: scales dropped at each end */
    int requantize;
} reduce_how;

/* Output scales of a majority tensor for the chunk (all ranks hold the
 * chunk's scales; the writer calls this): trimmed mean of |g|. */
static void majority_scales(const stream *s, const ds_delta_entry *e, int64_t nr, size_t k, float *out)
{
    const size_t ns = n_scales(e, nr), np = (size_t)s->np;
    float *mag = ds_malloc(sizeof(float) * ns * np);
    const float **ptr = ds_malloc(sizeof(float *) * np);
    for (size_t u = 0; u < np; u++) {
        for (size_t j = 0; j < ns; j++) mag[u * ns + j] = fabsf(s->scale[u][j]);
        ptr[u] = mag + u * ns;
    }
    ds_agg_trimmed_dense(np, ptr, ns, k, out, NULL);
    free(mag);
    free(ptr);
}

/* Writer's end of a tensor: store the assembled result. */
static int write_tensor(ds_delta_file *out, int i, const ds_delta_entry *oe, const reduce_how *h, void *res, float *scales)
{
    const int64_t numel = ds_tinfo_numel(&oe->t);
    if (h->m == M_MAJORITY && oe->coded) {
        int rc = ds_delta_write_signs(out, i, res);
        return rc ? rc : ds_delta_write_scales(out, i, scales);
    }
    if (oe->coded) { /* --requantize: BitDelta of the float result against zero */
        const size_t rows = (size_t)oe->rows, cols = (size_t)oe->cols;
        float *zero = ds_calloc(cols, sizeof(float));
        uint64_t *bits = ds_malloc(sizeof(uint64_t) * rows * (size_t)oe->words_per_row);
        double *row_abs = ds_malloc(sizeof(double) * rows);
        double *col_abs = oe->mode == DS_SCALE_COL ? ds_calloc(cols, sizeof(double)) : NULL;
        float *sc = ds_malloc(sizeof(float) * (size_t)oe->n_scales);
        for (size_t r = 0; r < rows; r++)
            ds_bitpack_compress(DS_KDT_F32, (const float *)res + r * cols, zero, 1, cols, bits + r * (size_t)oe->words_per_row,
                                &row_abs[r], col_abs);
        ds_delta_scales(oe, row_abs, col_abs, sc);
        int rc = ds_delta_write_signs(out, i, bits);
        if (!rc) rc = ds_delta_write_scales(out, i, sc);
        free(zero), free(bits), free(row_abs), free(col_abs), free(sc);
        return rc;
    }
    if (oe->t.dtype == DS_DTYPE_F32) return ds_delta_write_dense(out, i, res);
    void *buf = ds_malloc(ds_tinfo_bytes(&oe->t) + 1);
    ds_from_f32(oe->t.dtype, res, buf, (size_t)numel);
    int rc = ds_delta_write_dense(out, i, buf);
    free(buf);
    return rc;
}

/* Collective: every tensor, chunk by chunk; kept[p] counts the coordinates
 * where participant p's value was kept (agreed with the majority bit).
 * Returns this rank's status, not yet printed; all ranks stop at the same
 * point when any fails. */
static int reduce_all(stream *s, const ds_delta_meta *layout, const ds_delta_entry *oes, const int *writer, const reduce_how *h,
                      ds_delta_file *out, uint64_t *kept, int start, resume *ck)
{
    const ds_ctx *ctx = s->ctx;
    const size_t np = (size_t)s->np;
    int rc = 0, stop = 0;
    ds_progress pr;
    ds_progress_init(&pr, ctx, "aggregate", layout->n);
    for (int i = start; i < layout->n && !stop; i++) {
        const ds_delta_entry *e = &layout->entries[i], *oe = &oes[i];
        const int mine = writer[i] == ctx->rank, bits_out = h->m == M_MAJORITY && e->coded;
        const int64_t nrows = ds_delta_nrows(e), R = chunk_rows(s, e);
        /* bytes per output row: packed bits (majority) or float32 values */
        const size_t orow = bits_out ? (size_t)e->words_per_row * 8 : (size_t)(e->coded ? e->cols : ds_delta_row_elems(&e->t)) * 4;
        unsigned char *res = mine ? ds_malloc(orow * (size_t)nrows + 1) : NULL;
        float *scales = mine && bits_out ? ds_malloc(sizeof(float) * (size_t)e->n_scales) : NULL;
        const size_t maxsub = (size_t)((R + ctx->size - 1) / ctx->size);
        unsigned char *part = ds_malloc(orow * maxsub + 1), *all = ds_malloc(orow * maxsub * (size_t)ctx->size + 1);
        const uint64_t **pb = ds_malloc(sizeof(void *) * np);
        const float **ps = ds_malloc(sizeof(void *) * np);
        for (int64_t r0 = 0; r0 < nrows && !stop; r0 += R) {
            const int64_t nr = nrows - r0 < R ? nrows - r0 : R;
            stop = stream_chunk(s, e, r0, nr, &rc);
            if (stop) break;
            int64_t a, b;
            ds_shard_range(nr, ctx->rank, ctx->size, &a, &b);
            if (b > a && e->coded) {
                for (size_t u = 0; u < np; u++) {
                    pb[u] = s->bits[u] + (size_t)a * (size_t)e->words_per_row;
                    ps[u] = s->scale[u] + (e->mode == DS_SCALE_ROW ? (size_t)a : 0);
                }
                ds_agg_bits c = {np, (size_t)(b - a), (size_t)e->cols, e->mode, pb, ps};
                if (bits_out) ds_agg_majority_bits(&c, (uint64_t *)part, kept);
                else ds_agg_trimmed_bits(&c, h->k, (float *)part, kept);
            } else if (b > a) {
                const size_t re = (size_t)ds_delta_row_elems(&e->t);
                for (size_t u = 0; u < np; u++) ps[u] = s->dense[u] + (size_t)a * re;
                ds_agg_trimmed_dense(np, ps, (size_t)(b - a) * re, h->k, (float *)part, kept);
            }
            ds_comm_allgather(s->comm, part, all, orow * maxsub);
            if (!mine) continue;
            for (int r = 0; r < ctx->size; r++) {
                int64_t ra, rb;
                ds_shard_range(nr, r, ctx->size, &ra, &rb);
                memcpy(res + (size_t)(r0 + ra) * orow, all + (size_t)r * orow * maxsub, (size_t)(rb - ra) * orow);
            }
            if (bits_out && (r0 == 0 || e->mode == DS_SCALE_ROW))
                majority_scales(s, e, nr, h->k_scale, scales + (e->mode == DS_SCALE_ROW ? r0 : 0));
        }
        if (!stop && mine) rc = write_tensor(out, i, oe, h, res, scales);
        if (!stop) stop = any_failed(ctx, rc);
        free(res), free(scales), free(part), free(all), free(pb), free(ps);
        ds_progress_step(&pr, i + 1, "%s", e->t.name);
        /* after the last tensor, finishing costs less than a checkpoint */
        if (!stop && i + 1 < layout->n && stop_here(ctx, ck, i + 1)) break;
    }
    return rc;
}

/* ---- provenance */
static void params_text(const opts *o, char *buf, size_t n)
{
    buf[0] = 0;
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) snprintf(buf + strlen(buf), n - strlen(buf), "trim=%.17g\n", o->trim);
    if (o->m == M_KRUM || o->m == M_MULTIKRUM) snprintf(buf + strlen(buf), n - strlen(buf), "byzantine=%ld\n", o->f);
    if (o->m == M_MULTIKRUM) snprintf(buf + strlen(buf), n - strlen(buf), "select=%ld\n", o->select);
    if (o->m != M_KRUM && o->m != M_MAJORITY) snprintf(buf + strlen(buf), n - strlen(buf), "requantize=%d\n", o->requantize);
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
    if (o->m == M_KRUM || o->m == M_MULTIKRUM) json_object_set_new(p, "byzantine", json_integer(o->f));
    if (o->m == M_MULTIKRUM) json_object_set_new(p, "select", json_integer(o->select));
    if (o->m != M_KRUM && o->m != M_MAJORITY) json_object_set_new(p, "requantize", json_boolean(o->requantize));
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
    return json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:i, s:i, s:o}", "method", method_names[o->m], "params", params_json(o),
                     "version_sha256", version, "output", o->out, "content_sha256", content, "base_sha256", base, "n_inputs",
                     o->n_in, "n_used", n_used, "contributors", arr);
}

/* Rank 0: provenance attributes and datasets into the committed output. */
static int write_provenance(const char *path, const opts *o, const input *in, const char *version, int n_used)
{
    hid_t f, g = H5I_INVALID_HID;
    int rc = ds_h5_open_rw_serial(path, &f);
    if (rc) return rc;
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
    rc = ds_h5_attr_set_str(f, "aggregate_method", method_names[o->m]);
    if (!rc) rc = ds_h5_attr_set_str(f, "aggregate_params", ptxt);
    if (!rc) rc = ds_h5_attr_set_str(f, "aggregate_version_sha256", version);
    if (!rc) rc = ds_h5_attr_set_int(f, "aggregate_n_inputs", o->n_in);
    if (!rc) rc = ds_h5_attr_set_int(f, "aggregate_n_used", n_used);
    if (!rc) rc = ds_h5_group_create(f, "provenance", &g);
    if (!rc) rc = ds_h5_write_strings(g, "owner", n, owner);
    if (!rc) rc = ds_h5_write_strings(g, "content_sha256", n, content);
    if (!rc) rc = ds_h5_write_strings(g, "status", n, status);
    if (!rc) rc = ds_h5_write_strings(g, "reason", n, reason);
    if (!rc) rc = ds_h5_write_doubles(g, "weight", n, w);
    if (!rc) rc = ds_h5_write_doubles(g, "kept_fraction", n, kf);
    if (!rc) rc = ds_h5_write_doubles(g, "krum_score", n, sc);
    if (g >= 0) H5Gclose(g);
    int rc2 = ds_h5_close(f);
    free(ptxt), free(owner), free(content), free(status), free(reason), free(w), free(kf), free(sc);
    return rc ? rc : rc2;
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

/* ---- the job */
static int check_counts(const opts *o, int n, int n_dropped, int rank0, reduce_how *h, long *select)
{
    char why[96] = "";
    if (n_dropped) snprintf(why, sizeof why, " (%d of %d inputs dropped by the trust filter)", n_dropped, o->n_in);
    if (n < 1) return ds_err(DS_EXIT_INPUT, "no deltas left to aggregate%s", why);
    h->m = o->m;
    h->requantize = o->requantize;
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
    if (o->m == M_KRUM || o->m == M_MULTIKRUM) {
        if (n < 2 * o->f + 3)
            return ds_err(DS_EXIT_USAGE, "%s with --byzantine %ld needs at least %ld deltas (2F + 3), got %d%s",
                          method_names[o->m], o->f, 2 * o->f + 3, n, why);
        *select = o->m == M_KRUM ? 1 : o->select_set ? o->select : n - o->f;
        if (*select > n) return ds_err(DS_EXIT_USAGE, "--select %ld: only %d deltas%s", *select, n, why);
    }
    return 0;
}

/* ---- checkpoint record and state */
static ds_ckpt *ckpt_record(const opts *o, const input *in, int n, const int *idx)
{
    ds_ckpt *k = ds_ckpt_new("aggregate");
    ds_ckpt_record_int(k, "version", 1);
    ds_ckpt_record_str(k, "method", method_names[o->m]);
    if (o->m == M_TRIMMED || o->m == M_MAJORITY) ds_ckpt_record_double(k, "trim", o->trim);
    if (o->m == M_KRUM || o->m == M_MULTIKRUM) ds_ckpt_record_int(k, "byzantine", o->f);
    if (o->m == M_MULTIKRUM) ds_ckpt_record_int(k, "select", o->select);
    if (o->m != M_KRUM && o->m != M_MAJORITY) ds_ckpt_record_int(k, "requantize", o->requantize);
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
    int exists = ctx->rank == 0 && access(ck->path, F_OK) == 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, ctx->comm);
    if (!exists) return 0;
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

int ds_job_aggregate(ds_ctx *ctx, int argc, char **argv)
{
    opts o;
    int rc = parse(ctx, argc, argv, &o);
    if (rc == -1) {
        usage(ctx);
        rc = 0;
        goto done_opts;
    }
    rc = ds_ctx_agree(ctx, rc);
    /* Before the output is touched. Default cpu: no statistic runs on a GPU,
     * so none is bound unless asked for. */
    ds_dev *dev = NULL;
    if (!rc) rc = ds_dev_open(ctx, o.device ? o.device : "cpu", &dev);
    if (rc) goto done_opts;
    /* With --checkpoint, SIGUSR1 (Slurm's warning before the time limit;
     * mpiexec forwards it) and SIGTERM only set a flag, read at each tensor
     * boundary. Without it they keep their default action. */
    ds_ckpt_signals saved_signals;
    if (o.ckpt) ds_ckpt_signals_catch(&saved_signals);
    const double t0 = ds_now();
    input *in = ds_calloc((size_t)o.n_in, sizeof(input));
    ds_delta_meta layout = {.n = 0, .entries = NULL};
    ds_comm *comm = NULL;
    int *idx = ds_malloc(sizeof(int) * (size_t)o.n_in), *oidx = ds_malloc(sizeof(int) * (size_t)o.n_in);
    rc = ds_out_begin(ctx, o.out, o.overwrite);
    if (!rc && o.report) rc = ds_out_begin(ctx, o.report, o.overwrite);
    if (!rc) rc = read_inputs(ctx, &o, in, &layout);
    if (!rc) rc = ds_comm_init(&comm, ctx, o.comm);
    if (!rc) rc = trust_filter(ctx, comm, &o, in, &layout);
    int n = 0, n_dropped = 0;
    for (int k = 0; k < o.n_in; k++) {
        if (in[k].dropped) n_dropped++;
        else idx[n++] = k;
    }
    reduce_how how = {.m = o.m};
    long select = 0;
    if (!rc) rc = ds_ctx_agree(ctx, check_counts(&o, n, n_dropped, ctx->rank == 0, &how, &select));
    if (!rc) o.select = select;

    /* Resume, or start from the first tensor. The record needs the
     * participants and --select. */
    resume ck = {.on = o.ckpt != NULL};
    if (!rc && ck.on) {
        snprintf(ck.path, sizeof ck.path, "%s/%s", o.ckpt, CKPT_FILE);
        ck.rec = ckpt_record(&o, in, n, idx);
        rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(o.ckpt) : 0);
        if (!rc) rc = ckpt_restore(ctx, &ck, &o, layout.n);
    }

    /* Krum: choose the participants of the output (oidx). */
    stream s;
    int np = n, chosen = -1, streaming = 0;
    const int krum = o.m == M_KRUM || o.m == M_MULTIKRUM;
    memcpy(oidx, idx, sizeof(int) * (size_t)n);
    if (!rc) {
        rc = stream_init(&s, ctx, comm, in, n, idx, &layout, o.chunk_mb);
        streaming = 1;
    }
    double *score = ds_malloc(sizeof(double) * (size_t)n + 1);
    unsigned char *sel = ds_malloc((size_t)n + 1);
    if (!rc && krum) {
        double *d = ds_calloc((size_t)n * (size_t)n + 1, sizeof(double));
        if (ck.saved && ck.phase == 1) {
            rc = ckpt_get_krum(ctx, &ck, n, score, sel);
        } else {
            if (ck.saved) rc = ckpt_get_distances(ctx, &ck, n, d);
            if (!rc) rc = krum_distances(&s, &layout, d, ck.saved ? ck.next : 0, &ck);
            if (!rc && ck.stopped) {
                ck.phase = 0;
                rc = ckpt_save(ctx, &ck, n, d, NULL, NULL, 0, NULL);
            } else if (!rc) {
                ds_agg_krum_scores((size_t)n, d, (size_t)o.f, score);
                ds_agg_krum_select((size_t)n, score, (size_t)select, sel);
            }
        }
        if (!rc && !ck.stopped) {
            np = 0;
            for (int p = 0; p < n; p++) {
                in[idx[p]].score = score[p];
                if (!sel[p]) continue;
                if (o.m == M_KRUM) chosen = p; /* its position in the stream s */
                oidx[np++] = idx[p];
            }
        }
        free(d);
        if (!rc && !ck.stopped && o.m == M_MULTIKRUM) {
            stream_free(&s);
            streaming = 0;
            rc = stream_init(&s, ctx, comm, in, np, oidx, &layout, o.chunk_mb);
            streaming = 1;
        }
    }

    /* The output: created as NAME.tmp.tmp by the delta writer, committed to
     * NAME.tmp, given its provenance, then renamed by ds_out_finish. */
    ds_delta_entry *oes = ds_malloc(sizeof(ds_delta_entry) * (size_t)(layout.n + 1));
    int *writer = ds_malloc(sizeof(int) * (size_t)(layout.n + 1));
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(layout.n + 1));
    uint64_t *kept = ds_calloc((size_t)np + 1, sizeof(uint64_t));
    char stage[4200], content[65] = "", version[65] = "";
    ds_out_tmpname(o.out, stage, sizeof stage);
    int64_t total = 0;
    for (int i = 0; i < layout.n; i++) {
        out_entry(o.m, o.requantize, &layout.entries[i], &oes[i]);
        sizes[i] = ds_tinfo_numel(&oes[i].t);
        total += sizes[i];
    }
    ds_shard_by_size(layout.n, sizes, ctx->size, writer);
    ds_delta_file *out = NULL;
    /* a checkpoint of the output phase: the tensors before start are in the
     * partial output, and kept holds their counts (on rank 0) */
    const int start = ck.saved && ck.phase == 1 ? ck.next : 0;
    if (!rc && !ck.stopped && start > 0)
        rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_get_array(ck.saved, "kept", DS_DTYPE_U64, np, kept) : 0);
    if (!rc && !ck.stopped) {
        ds_delta_meta om = layout;
        om.entries = oes;
        om.content_sha256[0] = 0;
        snprintf(om.base_sha256, sizeof om.base_sha256, "%s", in[oidx[0]].base);
        snprintf(om.owner, sizeof om.owner, "deltasoup-aggregate");
        snprintf(om.scale_fit, sizeof om.scale_fit, "aggregate:%s", method_names[o.m]);
        /* each contributor's budget still holds for its data: report the largest */
        om.has_dp = 1;
        om.dp_epsilon = om.dp_delta = 0;
        for (int k = 0; k < o.n_in; k++) {
            if (in[k].dropped) continue;
            om.has_dp &= in[k].has_dp;
            if (in[k].eps > om.dp_epsilon) om.dp_epsilon = in[k].eps;
            if (in[k].dlt > om.dp_delta) om.dp_delta = in[k].dlt;
        }
        if (start == 0) {
            rc = ds_delta_create(stage, ctx->comm, &om, 1, &out);
        } else {
            /* the delta writer's file, NAME.tmp of the stage */
            char part[4300];
            ds_out_tmpname(stage, part, sizeof part);
            rc = ds_ctx_agree(ctx, ctx->rank == 0 && !ds_h5_is_hdf5(part)
                                       ? ds_err(DS_EXIT_INPUT, "%s: the partial output %s of this checkpoint is missing or "
                                                               "not HDF5 (remove %s to start over)", ck.path, part, o.ckpt)
                                       : 0);
            if (!rc && (rc = ds_delta_resume(stage, ctx->comm, &om, start, writer, &out)) && ctx->rank == 0)
                fprintf(stderr, "deltasoup aggregate: %s: cannot resume (remove %s to start over)\n", ck.path, o.ckpt);
        }
    }
    if (!rc && !ck.stopped) {
        int wrc = 0;
        if (chosen >= 0) {
            wrc = copy_chosen(&s, &layout, chosen, out);
            kept[0] = ctx->rank == 0 ? (uint64_t)total : 0; /* summed over ranks below */
        } else {
            wrc = reduce_all(&s, &layout, oes, writer, &how, out, kept, start, &ck);
        }
        if (ck.stopped) { /* every rank's wrc is 0 here: the ranks agree to stop only when all are fine */
            ck.phase = 1;
            rc = ds_delta_suspend(out);
            if (!rc) rc = ckpt_save(ctx, &ck, n, NULL, krum ? score : NULL, sel, np, kept);
        } else {
            rc = ds_delta_commit(out, ds_ctx_agree(ctx, wrc), NULL, content);
        }
    }
    if (!rc && ck.stopped) {
        ds_printf0(ctx, "[aggregate] signal: checkpoint after tensor %d/%d of the %s written to %s; run again to resume\n",
                   ck.next, layout.n, ck.phase ? "output" : "distances", ck.path);
        rc = DS_EXIT_CHECKPOINTED;
    }
    int n_used = 0;
    if (!rc) {
        /* integer counts < 2^53: the sum of doubles is exact */
        double *kd = ds_malloc(sizeof(double) * ((size_t)np + 1)), sum = 0;
        for (int p = 0; p < np; p++) kd[p] = (double)kept[p];
        ds_comm_allreduce_sum_f64(comm, kd, kd, (size_t)np);
        for (int p = 0; p < np; p++) sum += kd[p];
        for (int p = 0; p < np; p++) {
            input *x = &in[oidx[p]];
            x->kept_frac = total ? kd[p] / (double)total : 0;
            x->weight = sum > 0 ? kd[p] / sum : 0;
            n_used += x->weight > 0;
        }
        free(kd);
        version_hash(&o, in, version);
        int prc = ctx->rank == 0 ? write_provenance(stage, &o, in, version, n_used) : 0;
        rc = ds_out_finish(ctx, o.out, prc);
    }
    if (!rc) {
        json_t *rep = report_json(&o, in, version, content, in[oidx[0]].base, n_used);
        if (o.report) rc = ds_out_write_json(ctx, o.report, rep, JSON_INDENT(2) | JSON_SORT_KEYS, 0);
        json_decref(rep);
    }
    if (!rc) {
        print_table(ctx, &o, in);
        char el[32];
        ds_printf0(ctx, "wrote %s: %s of %d deltas (%d used, %d dropped)\ncontent_sha256: %s\nversion_sha256: %s\n", o.out,
                   method_names[o.m], o.n_in, n_used, n_dropped, content, version);
        double rss = (double)ds_peak_rss(), maxrss;
        MPI_Allreduce(&rss, &maxrss, 1, MPI_DOUBLE, MPI_MAX, ctx->comm);
        ds_printf0(ctx, "time: %s on %d rank(s), peak RSS per rank %.1f MB\n", ds_fmt_duration(ds_now() - t0, el, sizeof el),
                   ctx->size, maxrss / 1e6);
        /* Done: a later run with the same folder starts over. */
        if (ck.on && ctx->rank == 0) {
            unlink(ck.path);
            rmdir(o.ckpt);
        }
    }
    ds_ckpt_free(ck.rec);
    ds_ckpt_free(ck.saved);
    free(score), free(sel);
    if (streaming) stream_free(&s);
    ds_comm_free(comm);
    ds_dev_close(dev);
    free(in), free(idx), free(oidx), free(layout.entries), free(oes), free(writer), free(sizes), free(kept);
    if (o.ckpt) ds_ckpt_signals_restore(&saved_signals);
done_opts:
    for (int k = 0; k < o.n_in; k++) free(o.in[k]);
    free(o.in);
    return rc;
}
