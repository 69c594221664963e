/* deltasoup inspect FILE [--json]: what a file holds, with per-tensor
 * statistics and a recomputed content hash (jobs/inspect.h). */
#include "config.h"
#include "jobs/inspect.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/detect.h"
#include "io/h5.h"
#include "io/h5_model.h"
#include "src/jobs.h"
#include "src/json_text.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/tensor_shard.h"

static const struct {
    const char *kind;
    ds_inspect_detect_fn detect;
    ds_inspect_fn inspect;
} formats[] = {
#define DS_INSPECT(kind, detect, fn) {kind, detect, fn},
#include "jobs/inspect.def"
#undef DS_INSPECT
};
#define N_FORMATS (int)(sizeof formats / sizeof formats[0])

/* ---- shared pieces */

int ds_inspect_tensors(const ds_ctx *ctx, int n, const ds_tinfo *t, ds_inspect_read_fn read, void *arg,
                       ds_tensor_stats *stats, ds_digest *content)
{
    ds_tensor_shard plan;
    ds_tensor_shard_plan(&plan, ctx, n, t, sizeof *t, DS_WEIGH_BYTES);
    const int *owner = plan.owner;
    /* Mine, in index order: every rank knows the order of the others too. */
    ds_tensor_stats *mine = ds_calloc((size_t)(n ? n : 1), sizeof *mine);
    ds_named_digest *dig = ds_calloc((size_t)(n ? n : 1), sizeof *dig);
    int k = 0, rc = 0;
    /* one buffer for this rank's largest tensor, reused for every tensor */
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        if (owner[i] == ctx->rank && ds_tinfo_bytes(&t[i]) > cap) cap = ds_tinfo_bytes(&t[i]);
    void *buf = ds_buf_alloc(cap);
    for (int i = 0; i < n && !rc; i++) {
        if (owner[i] != ctx->rank) continue;
        rc = read(arg, i, buf);
        if (!rc) {
            ds_tensor_stats_compute(&t[i], buf, &mine[k]);
            snprintf(dig[k].name, DS_NAME_MAX, "%s", t[i].name);
            dig[k].digest = mine[k].digest;
            k++;
        }
    }
    free(buf);
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) {
        int *counts = ds_calloc((size_t)ctx->size, sizeof(int)), *displs = ds_calloc((size_t)ctx->size, sizeof(int));
        for (int i = 0; i < n; i++) counts[owner[i]] += (int)sizeof(ds_tensor_stats);
        for (int r = 1; r < ctx->size; r++) displs[r] = displs[r - 1] + counts[r - 1];
        ds_tensor_stats *all = ds_malloc(sizeof *all * (size_t)(n ? n : 1));
        MPI_Allgatherv(mine, k * (int)sizeof *mine, MPI_BYTE, all, counts, displs, MPI_BYTE, ctx->comm);
        int *next = ds_calloc((size_t)ctx->size, sizeof(int));
        for (int i = 0; i < n; i++) {
            int r = owner[i];
            stats[i] = all[displs[r] / (int)sizeof *all + next[r]++];
        }
        rc = ds_ctx_agree(ctx, ds_content_hash(ctx, k, dig, content));
        free(next);
        free(all);
        free(counts);
        free(displs);
    }
    free(mine);
    free(dig);
    ds_tensor_shard_free(&plan);
    return rc;
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *ds_inspect_config_json(const ds_config *c)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}", "dim", c->dim, "hidden_dim",
                     c->hidden_dim, "n_layers", c->n_layers, "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads,
                     "vocab_size", c->vocab_size, "max_seq_len", c->max_seq_len, "norm_eps",
                     ds_h5_float_decimal(c->norm_eps), "rope_theta", ds_h5_float_decimal(c->rope_theta),
                     "tied_embeddings", c->tied_embeddings);
}

json_t *ds_inspect_tensors_json(int n, const ds_tensor_stats *s)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < s[i].info.ndim; d++) json_array_append_new(shape, json_integer(s[i].info.shape[d]));
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(s[i].info.name));
        json_object_set_new(o, "dtype", json_string(ds_dtype_name(s[i].info.dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "bytes", json_integer((json_int_t)ds_tinfo_bytes(&s[i].info)));
        json_object_set_new(o, "min", real_or_null(s[i].min));
        json_object_set_new(o, "max", real_or_null(s[i].max));
        json_object_set_new(o, "mean", real_or_null(s[i].mean));
        json_object_set_new(o, "std", real_or_null(s[i].std));
        json_object_set_new(o, "nonfinite", json_integer(s[i].nonfinite));
        json_array_append_new(arr, o);
    }
    return arr;
}

void ds_inspect_add_tensors(json_t *report, int n, const ds_tensor_stats *s)
{
    int64_t params = 0, bytes = 0;
    for (int i = 0; i < n; i++) {
        params += ds_tinfo_numel(&s[i].info);
        bytes += (int64_t)ds_tinfo_bytes(&s[i].info);
    }
    json_object_set_new(report, "n_tensors", json_integer(n));
    json_object_set_new(report, "n_params", json_integer(params));
    json_object_set_new(report, "bytes", json_integer(bytes));
    json_object_set_new(report, "tensors", ds_inspect_tensors_json(n, s));
}

json_t *ds_inspect_hash_json(const char *recorded, const ds_digest *computed)
{
    char hex[65];
    ds_digest_hex(computed, hex);
    int have = recorded && recorded[0];
    return json_pack("{s:o, s:s, s:o}", "recorded", have ? json_string(recorded) : json_null(), "computed", hex,
                     "match", have ? json_boolean(strcmp(recorded, hex) == 0) : json_null());
}

/* --allow-nonfinite (set by the job before the type's inspect runs) */
static int allow_nonfinite;

/* The first tensor of the report with non-finite values: exit 3 naming it
 * and the count, unless --allow-nonfinite. */
static int check_nonfinite(const char *path, const json_t *report)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(report, "tensors"), i, t) {
        const json_int_t nf = json_integer_value(json_object_get(t, "nonfinite"));
        if (nf > 0 && !allow_nonfinite)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %lld non-finite value(s) (--allow-nonfinite accepts them)",
                          path, json_string_value(json_object_get(t, "name")), (long long)nf);
    }
    return 0;
}

int ds_inspect_report(const ds_ctx *ctx, const char *path, json_t *report, int json)
{
    if (ctx->rank == 0) {
        if (json) {
            json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
            printf("\n");
        } else {
            ds_json_print_text(stdout, report);
        }
        fflush(stdout);
    }
    const json_t *h = json_object_get(report, "content_sha256");
    int bad = h && json_is_false(json_object_get(h, "match"));
    int rc = 0;
    if (bad) {
        rc = ds_err(DS_EXIT_INPUT, "%s: content hash mismatch: recorded %s, computed %s (the data was changed or damaged)",
                    path, json_string_value(json_object_get(h, "recorded")),
                    json_string_value(json_object_get(h, "computed")));
        if (ctx->rank == 0) ds_error_print(ctx, ds_errmsg());
    } else if ((rc = check_nonfinite(path, report)) && ctx->rank == 0) {
        ds_error_print(ctx, ds_errmsg());
    }
    json_decref(report);
    return rc;
}

/* ---- the model checkpoint branch */

typedef struct {
    ds_model_file *f;
    const ds_tinfo *t;
} model_reader;

static int model_read(void *arg, int i, void *buf)
{
    model_reader *r = arg;
    return ds_model_read_tensor(r->f, r->t[i].name, r->t[i].dtype, buf);
}

int ds_inspect_model(const ds_ctx *ctx, const char *path, int json)
{
    ds_model_file *f;
    int rc = ds_model_open(path, ctx->comm, &f);
    if (rc) return rc;
    const ds_model_meta *m = ds_model_get_meta(f);
    int tokinfo[3] = {0, 0, 0}; /* vocab_size, max_token_length, Hugging Face kind */
    char chat[sizeof ((ds_tokenizer *)0)->chat_template] = "";
    if (m->has_tokenizer && ctx->rank == 0) {
        ds_tokenizer tok;
        rc = ds_model_read_tokenizer(f, &tok);
        if (!rc) {
            tokinfo[0] = tok.vocab_size;
            tokinfo[1] = tok.max_token_length;
            tokinfo[2] = tok.hf != NULL;
            memcpy(chat, tok.chat_template, sizeof chat);
            ds_tokenizer_free(&tok);
        }
    }
    MPI_Bcast(tokinfo, 3, MPI_INT, 0, ctx->comm);
    MPI_Bcast(chat, (int)sizeof chat, MPI_CHAR, 0, ctx->comm);
    ds_tensor_stats *stats = ds_calloc((size_t)(m->n_tensors ? m->n_tensors : 1), sizeof *stats);
    ds_digest content;
    model_reader rd = {f, m->tensors};
    if (!(rc = ds_ctx_agree(ctx, rc))) rc = ds_inspect_tensors(ctx, m->n_tensors, m->tensors, model_read, &rd, stats, &content);
    json_t *report = NULL;
    if (!rc) {
        report = json_object();
        json_object_set_new(report, "file", json_string(path));
        json_object_set_new(report, "format", json_string(DS_MODEL_FORMAT));
        json_object_set_new(report, "format_version", json_integer(m->format_version));
        json_object_set_new(report, "architecture", json_string("llama"));
        json_object_set_new(report, "config", ds_inspect_config_json(&m->cfg));
        json_object_set_new(report, "tokenizer",
                            m->has_tokenizer ? json_pack("{s:i, s:i, s:s, s:o}", "vocab_size", tokinfo[0],
                                                         "max_token_length", tokinfo[1], "format",
                                                         tokinfo[2] ? "huggingface" : "llama2c", "chat_template",
                                                         chat[0] ? json_string(chat) : json_null())
                                             : json_null());
        ds_inspect_add_tensors(report, m->n_tensors, stats);
        json_object_set_new(report, "content_sha256", ds_inspect_hash_json(m->content_sha256, &content));
    }
    free(stats);
    ds_model_close(f);
    return rc ? rc : ds_inspect_report(ctx, path, report, json);
}

/* ---- the job */

/* "model, delta, safetensors" */
static const char *kinds(void)
{
    static char list[256];
    list[0] = 0;
    for (int k = 0; k < N_FORMATS; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", formats[k].kind);
    return list;
}

typedef struct {
    int json, allow_nonfinite;
    ds_strlist file;
    int no_verify;
} opts;

/* -j and -q as well: inspect has always taken them */
static const ds_opt options[] = {
    {.name = "json", .short_name = 'j', .type = DS_OPT_T_FLAG, .off = offsetof(opts, json),
     .help = "one JSON object on stdout instead of the table"},
    {.name = "allow-nonfinite", .type = DS_OPT_T_FLAG, .off = offsetof(opts, allow_nonfinite),
     .help = "exit 0 for a file with NaN or infinite values (reported in each tensor's nonfinite count)"},
    DS_OPT_NO_VERIFY(opts, no_verify),
    {.name = "quiet", .short_name = 'q', .type = DS_OPT_T_QUIET,
     .help = "accepted for uniformity (inspect prints no progress)"},
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup inspect FILE [--json] [--allow-nonfinite]",
    .about = "Show what a deltasoup file holds: format, version, config, every tensor's name,\n"
             "shape, dtype, bytes and min/max/mean/std, and the content hash recomputed from\n"
             "the data next to the recorded one. Runs at any number of ranks (tensors are\n"
             "shared out by size); the output does not depend on it.",
    .opts = options,
    .pos_off = offsetof(opts, file),
    .pos_min = 1,
    .pos_max = 1,
    .pos_name = "FILE"};

int ds_job_inspect(ds_ctx *ctx, int argc, char **argv)
{
    char epilog[512];
    snprintf(epilog, sizeof epilog,
             "file types: %s\nexit: 0 ok, 2 usage, 3 unreadable or damaged file (incl. a content hash mismatch,\n"
             "and non-finite values unless --allow-nonfinite)",
             kinds());
    ds_cmd c = cmd;
    c.epilog = epilog;
    opts o = {0};
    int rc = ds_opts_parse(ctx, &c, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    const char *path = o.file.v[0];
    allow_nonfinite = o.allow_nonfinite;
    ds_opts_free(&c, &o);
    int k = -1;
    if (ctx->rank == 0) {
        for (int i = 0; i < N_FORMATS && k < 0; i++)
            if (formats[i].detect(path)) k = i;
        if (k < 0) rc = ds_file_unknown_kind(path, kinds());
    }
    MPI_Bcast(&k, 1, MPI_INT, 0, ctx->comm);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    return formats[k].inspect(ctx, path, o.json);
}
