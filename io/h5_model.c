/* HDF5 model checkpoint (io/h5_model.h, docs/formats.md "Model checkpoint"). */
#include "config.h"
#include "io/h5_model.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/h5.h"
#include "src/ctx.h"
#include "src/hash.h"

struct ds_model_file {
    ds_ctx ctx; /* the communicator the file was opened on */
    char path[4096];
    int writing;
    hid_t file, tensors, tokgrp;
    hid_t *dsets; /* one per meta.tensors entry */
    ds_model_meta meta;
    /* write side: what this rank wrote, for the content hash and the check
     * that every tensor was written by someone */
    unsigned char *written;
    ds_named_digest *digests;
    int n_digests;
    /* read side: the per-tensor digests recorded at commit (attribute
     * "sha256" of each dataset; has_rec[i] = 0 in files written before) */
    ds_digest *rec;
    unsigned char *has_rec;
    /* scratch buffers of the reads and writes, grown to the largest need
     * and kept until close: no allocation (and no first-touch page faults)
     * per tensor */
    void *scratch[3];
    size_t scratch_cap[3];
};

/* Scratch buffer k (0..2) of at least n bytes; its content is not kept. */
static void *scratch(ds_model_file *f, int k, size_t n)
{
    if (n > f->scratch_cap[k]) {
        free(f->scratch[k]);
        f->scratch[k] = ds_buf_alloc(n);
        f->scratch_cap[k] = n;
    }
    return f->scratch[k];
}

/* Messages of collective calls are printed once by ds_ctx_agree under this
 * label (the library does not know the job's name). */
#define MODEL_LABEL "io"

static void file_ctx(ds_model_file *f, MPI_Comm comm)
{
    f->ctx.comm = comm;
    MPI_Comm_rank(comm, &f->ctx.rank);
    MPI_Comm_size(comm, &f->ctx.size);
    f->ctx.quiet = 1;
    f->ctx.job = MODEL_LABEL;
}

static int cmp_tinfo(const void *a, const void *b)
{
    return strcmp(((const ds_tinfo *)a)->name, ((const ds_tinfo *)b)->name);
}

int ds_model_llama_tensors(const ds_config *cfg, ds_dtype dt, ds_tinfo **out)
{
    int n = 2 + 9 * cfg->n_layers + (cfg->tied_embeddings ? 0 : 1), k = 0;
    ds_tinfo *t = ds_calloc((size_t)n, sizeof *t);
    int64_t dim = cfg->dim, hid = cfg->hidden_dim, voc = cfg->vocab_size;
    int64_t kv = (int64_t)cfg->dim / cfg->n_heads * cfg->n_kv_heads;
#define ADD(r, c, ...)                                                                                                 \
    do {                                                                                                               \
        snprintf(t[k].name, DS_NAME_MAX, __VA_ARGS__);                                                                 \
        t[k].dtype = dt;                                                                                               \
        t[k].ndim = (c) ? 2 : 1;                                                                                       \
        t[k].shape[0] = (r);                                                                                           \
        t[k].shape[1] = (c);                                                                                           \
        k++;                                                                                                           \
    } while (0)
    ADD(voc, dim, "model.embed_tokens.weight");
    ADD(dim, 0, "model.norm.weight");
    if (!cfg->tied_embeddings) ADD(voc, dim, "lm_head.weight");
    for (int i = 0; i < cfg->n_layers; i++) {
        ADD(dim, dim, "model.layers.%d.self_attn.q_proj.weight", i);
        ADD(kv, dim, "model.layers.%d.self_attn.k_proj.weight", i);
        ADD(kv, dim, "model.layers.%d.self_attn.v_proj.weight", i);
        ADD(dim, dim, "model.layers.%d.self_attn.o_proj.weight", i);
        ADD(hid, dim, "model.layers.%d.mlp.gate_proj.weight", i);
        ADD(hid, dim, "model.layers.%d.mlp.up_proj.weight", i);
        ADD(dim, hid, "model.layers.%d.mlp.down_proj.weight", i);
        ADD(dim, 0, "model.layers.%d.input_layernorm.weight", i);
        ADD(dim, 0, "model.layers.%d.post_attention_layernorm.weight", i);
    }
#undef ADD
    qsort(t, (size_t)n, sizeof *t, cmp_tinfo);
    *out = t;
    return n;
}

const ds_model_meta *ds_model_get_meta(const ds_model_file *f) { return &f->meta; }
const char *ds_model_path(const ds_model_file *f) { return f->path; }

int ds_model_find(const ds_model_file *f, const char *name)
{
    int lo = 0, hi = f->meta.n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->meta.tensors[mid].name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int is_model_dtype(ds_dtype t) { return t == DS_DTYPE_F32 || t == DS_DTYPE_F16 || t == DS_DTYPE_BF16; }

/* The tensor list of a file (or of a writer) must be exactly the llama list
 * for its config: same names, same shapes; dtypes F32/F16/BF16. */
static int check_tensors(const char *path, const ds_config *cfg, int n, const ds_tinfo *t)
{
    ds_tinfo *want;
    int nw = ds_model_llama_tensors(cfg, DS_DTYPE_F32, &want), rc = 0;
    char s1[128], s2[128];
    for (int i = 0, j = 0; !rc && (i < n || j < nw);) {
        int c = i == n ? 1 : j == nw ? -1 : strcmp(t[i].name, want[j].name);
        if (c < 0) {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: not a tensor of a llama model with this config (n_layers=%d, "
                        "tied_embeddings=%d)", path, t[i].name, cfg->n_layers, cfg->tied_embeddings);
        } else if (c > 0) {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s missing", path, want[j].name);
        } else {
            int same = t[i].ndim == want[j].ndim;
            for (int d = 0; same && d < t[i].ndim; d++) same = t[i].shape[d] == want[j].shape[d];
            if (!same)
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s does not match the config (expected %s)", path,
                            t[i].name, ds_shape_str(&t[i], s1, sizeof s1), ds_shape_str(&want[j], s2, sizeof s2));
            else if (!is_model_dtype(t[i].dtype))
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype %s is not F32, F16 or BF16", path, t[i].name,
                            ds_dtype_name(t[i].dtype));
            i++, j++;
        }
    }
    free(want);
    return rc;
}

static void close_objects(ds_model_file *f)
{
    if (f->dsets)
        for (int i = 0; i < f->meta.n_tensors; i++)
            if (f->dsets[i] > 0) H5Dclose(f->dsets[i]);
    if (f->tensors > 0) H5Gclose(f->tensors);
    if (f->tokgrp > 0) H5Gclose(f->tokgrp);
    f->tensors = f->tokgrp = H5I_INVALID_HID;
    free(f->dsets);
    f->dsets = NULL;
}

static void model_free(ds_model_file *f)
{
    free(f->meta.tensors);
    free(f->written);
    free(f->digests);
    free(f->rec);
    free(f->has_rec);
    for (int k = 0; k < 3; k++) free(f->scratch[k]);
    free(f);
}

static ds_model_file *model_new(const char *path, MPI_Comm comm)
{
    ds_model_file *f = ds_calloc(1, sizeof *f);
    file_ctx(f, comm);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = f->tensors = f->tokgrp = H5I_INVALID_HID;
    return f;
}

/* ---- read side */

static int get_int_attr(ds_model_file *f, const char *name, int lo, int hi, int *out)
{
    int64_t v;
    int rc = ds_h5_attr_get_int(f->file, name, &v);
    if (rc) return rc;
    if (v < lo || v > hi)
        return ds_err(DS_EXIT_INPUT, "%s: attribute %s = %lld out of range [%d, %d]", f->path, name, (long long)v, lo,
                      hi);
    *out = (int)v;
    return 0;
}

/* bos_token_id / eos_token_id: a scalar int or a 1-D int array (a list in
 * config.json); absent: none. */
static int ids_attr_set(hid_t obj, const char *name, const int *ids, int n, int is_list)
{
    if (n == 0) return 0;
    if (!is_list) return ds_h5_attr_set_int(obj, name, ids[0]);
    int64_t v[DS_MAX_SPECIAL_IDS];
    for (int i = 0; i < n; i++) v[i] = ids[i];
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return st < 0 ? ds_err(DS_EXIT_OUTPUT, "cannot write attribute %s", name) : 0;
}

static int ids_attr_get(ds_model_file *f, const char *name, int *ids, int *n, int *is_list)
{
    *n = *is_list = 0;
    if (!ds_h5_attr_exists(f->file, name)) return 0;
    hid_t a = H5Aopen(f->file, name, H5P_DEFAULT);
    hid_t space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    hid_t type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a);
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hssize_t cnt = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int64_t v[DS_MAX_SPECIAL_IDS];
    int rc = 0;
    if (a < 0 || type < 0 || H5Tget_class(type) != H5T_INTEGER || nd < 0 || nd > 1 || cnt < 1 ||
        cnt > DS_MAX_SPECIAL_IDS || H5Aread(a, H5T_NATIVE_INT64, v) < 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: attribute %s: not an integer or a list of 1..%d integers", f->path, name,
                    DS_MAX_SPECIAL_IDS);
    for (int i = 0; !rc && i < cnt; i++) {
        if (v[i] < 0 || v[i] > INT32_MAX) rc = ds_err(DS_EXIT_INPUT, "%s: attribute %s: id %lld out of range", f->path,
                                                      name, (long long)v[i]);
        else ids[i] = (int)v[i];
    }
    if (!rc) *n = (int)cnt, *is_list = nd == 1;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* The attributes beyond the shape (absent in older files: no scaling, no ids). */
static int read_config_extra(ds_model_file *f, ds_config *c)
{
    char kind[32];
    double v[3];
    int rc = 0;
    if (ds_h5_attr_exists(f->file, "rope_scaling")) {
        if ((rc = ds_h5_attr_get_str(f->file, "rope_scaling", kind, sizeof kind))) return rc;
        if (strcmp(kind, "linear") == 0) c->rope_scaling = DS_ROPE_LINEAR;
        else if (strcmp(kind, "llama3") == 0) c->rope_scaling = DS_ROPE_LLAMA3;
        else return ds_err(DS_EXIT_INPUT, "%s: rope_scaling \"%s\" is not supported (linear or llama3)", f->path, kind);
        if ((rc = ds_h5_attr_get_double(f->file, "rope_scaling_factor", &v[0]))) return rc;
        c->rope_factor = (float)v[0];
    }
    if (c->rope_scaling == DS_ROPE_LLAMA3) {
        if ((rc = ds_h5_attr_get_double(f->file, "rope_scaling_low_freq_factor", &v[1])) ||
            (rc = ds_h5_attr_get_double(f->file, "rope_scaling_high_freq_factor", &v[2])) ||
            (rc = get_int_attr(f, "rope_scaling_original_max_position_embeddings", 1, 1 << 30,
                               &c->rope_original_max_pos)))
            return rc;
        c->rope_low_freq_factor = (float)v[1];
        c->rope_high_freq_factor = (float)v[2];
    }
    if ((rc = ids_attr_get(f, "bos_token_id", c->bos_ids, &c->n_bos, &c->bos_is_list))) return rc;
    return ids_attr_get(f, "eos_token_id", c->eos_ids, &c->n_eos, &c->eos_is_list);
}

static int read_config(ds_model_file *f)
{
    ds_config *c = &f->meta.cfg;
    const int big = 1 << 30;
    double eps, theta;
    int rc;
    if ((rc = get_int_attr(f, "dim", 1, big, &c->dim)) || (rc = get_int_attr(f, "hidden_dim", 1, big, &c->hidden_dim)) ||
        (rc = get_int_attr(f, "n_layers", 1, big, &c->n_layers)) ||
        (rc = get_int_attr(f, "n_heads", 1, big, &c->n_heads)) ||
        (rc = get_int_attr(f, "n_kv_heads", 1, big, &c->n_kv_heads)) ||
        (rc = get_int_attr(f, "vocab_size", 1, big, &c->vocab_size)) ||
        (rc = get_int_attr(f, "max_seq_len", 1, big, &c->max_seq_len)) ||
        (rc = get_int_attr(f, "tied_embeddings", 0, 1, &c->tied_embeddings)) ||
        (rc = ds_h5_attr_get_double(f->file, "norm_eps", &eps)) ||
        (rc = ds_h5_attr_get_double(f->file, "rope_theta", &theta)))
        return rc;
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    if ((rc = read_config_extra(f, c))) return rc;
    return ds_config_check(c, f->path);
}

/* The digest recorded in attribute "sha256" of dataset d, if any. */
static int read_rec(const char *path, hid_t d, const char *name, ds_digest *dg, unsigned char *has)
{
    char hex[80];
    *has = 0;
    if (!ds_h5_attr_exists(d, "sha256")) return 0;
    int rc = ds_h5_attr_get_str(d, "sha256", hex, sizeof hex);
    if (rc) return rc;
    if (ds_digest_parse(hex, dg) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: attribute sha256 is not 64 lowercase hex digits", path, name);
    *has = 1;
    return 0;
}

static int read_tensor_list(ds_model_file *f)
{
    int n, rc;
    char **names;
    if ((rc = ds_h5_group_open(f->file, "tensors", &f->tensors))) return rc;
    if ((rc = ds_h5_group_list(f->tensors, &n, &names))) return rc;
    f->meta.n_tensors = n;
    f->meta.tensors = ds_calloc((size_t)(n ? n : 1), sizeof(ds_tinfo));
    f->dsets = ds_calloc((size_t)(n ? n : 1), sizeof(hid_t));
    for (int i = 0; i < n; i++) f->dsets[i] = H5I_INVALID_HID;
    f->rec = ds_calloc((size_t)(n ? n : 1), sizeof(ds_digest));
    f->has_rec = ds_calloc((size_t)(n ? n : 1), 1);
    for (int i = 0; i < n && !rc; i++) {
        ds_tinfo *t = &f->meta.tensors[i];
        if (strlen(names[i]) >= DS_NAME_MAX) {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor name too long: %.60s...", f->path, names[i]);
            break;
        }
        strcpy(t->name, names[i]);
        if ((rc = ds_h5_dataset_open(f->tensors, t->name, &f->dsets[i]))) break;
        if ((rc = ds_h5_dataset_shape(f->dsets[i], &t->ndim, t->shape))) break;
        if (ds_h5_dtype_of(f->dsets[i], &t->dtype) != 0 || !is_model_dtype(t->dtype))
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: stored type is not F32, F16 or BF16", f->path, t->name);
        if (!rc) rc = read_rec(f->path, f->dsets[i], t->name, &f->rec[i], &f->has_rec[i]);
    }
    ds_h5_names_free(n, names);
    return rc ? rc : check_tensors(f->path, &f->meta.cfg, n, f->meta.tensors);
}

static int read_meta(ds_model_file *f)
{
    char fmt[256], arch[64];
    int64_t ver;
    int rc;
    if (!ds_h5_attr_exists(f->file, "format"))
        return ds_err(DS_EXIT_INPUT, "%s: not a deltasoup model checkpoint (no format attribute)", f->path);
    if ((rc = ds_h5_attr_get_str(f->file, "format", fmt, sizeof fmt))) return rc;
    if (strcmp(fmt, DS_MODEL_FORMAT) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: not a deltasoup model checkpoint (format = \"%s\", expected \"%s\")", f->path,
                      fmt, DS_MODEL_FORMAT);
    if ((rc = ds_h5_attr_get_int(f->file, "format_version", &ver))) return rc;
    if (ver > DS_MODEL_FORMAT_VERSION)
        return ds_err(DS_EXIT_INPUT, "%s: format_version %lld is newer than this deltasoup reads (%d): upgrade deltasoup",
                      f->path, (long long)ver, DS_MODEL_FORMAT_VERSION);
    if (ver < 1) return ds_err(DS_EXIT_INPUT, "%s: invalid format_version %lld", f->path, (long long)ver);
    f->meta.format_version = (int)ver;
    if ((rc = ds_h5_attr_get_str(f->file, "architecture", arch, sizeof arch))) return rc;
    if (strcmp(arch, "llama") != 0)
        return ds_err(DS_EXIT_INPUT, "%s: architecture \"%s\" is not supported (only \"llama\")", f->path, arch);
    if ((rc = read_config(f))) return rc;
    if (ds_h5_attr_exists(f->file, "content_sha256")) {
        ds_digest d;
        if ((rc = ds_h5_attr_get_str(f->file, "content_sha256", f->meta.content_sha256,
                                     sizeof f->meta.content_sha256)))
            return rc;
        if (ds_digest_parse(f->meta.content_sha256, &d) != 0)
            return ds_err(DS_EXIT_INPUT, "%s: content_sha256 is not 64 lowercase hex digits", f->path);
    }
    if ((rc = read_tensor_list(f))) return rc;
    f->meta.has_tokenizer = ds_h5_exists(f->file, "tokenizer");
    if (f->meta.has_tokenizer) rc = ds_h5_group_open(f->file, "tokenizer", &f->tokgrp);
    if (!rc && f->meta.has_tokenizer && ds_h5_attr_exists(f->tokgrp, "format")) {
        char tf[16];
        if ((rc = ds_h5_attr_get_str(f->tokgrp, "format", tf, sizeof tf))) return rc;
        if (strcmp(tf, "hf") != 0)
            return ds_err(DS_EXIT_INPUT, "%s: tokenizer format \"%s\" is not known (\"hf\", or none: llama2.c)", f->path,
                          tf);
        f->meta.tokenizer_hf = 1;
    }
    return rc;
}

int ds_model_is_model(const char *path)
{
    hid_t file;
    char fmt[64] = "";
    if (ds_h5_open_serial(path, &file) != 0) {
        ds_err_clear();
        return 0;
    }
    int rc = ds_h5_attr_exists(file, "format") && ds_h5_attr_get_str(file, "format", fmt, sizeof fmt) == 0 &&
             strcmp(fmt, DS_MODEL_FORMAT) == 0;
    H5Fclose(file);
    ds_err_clear();
    return rc;
}

/* Digest tensor i as stored, reading it in pieces (bounded memory), the
 * digest of a piece overlapping the read of the next (ds_sha256_async);
 * when want_buf is given, also fill it with the tensor converted to want. */
static int digest_tensor(ds_model_file *f, int i, ds_dtype want, void *want_buf, ds_digest *out,
                         ds_model_piece_fn fn, void *arg)
{
    const ds_tinfo *t = &f->meta.tensors[i];
    int64_t rows = t->ndim ? t->shape[0] : 1, re = 1;
    for (int k = 1; k < t->ndim; k++) re *= t->shape[k];
    size_t es = ds_dtype_size(t->dtype), ws = ds_dtype_size(want);
    int direct = want_buf && want == t->dtype;
    /* pieces of 16 MB read in place, or of 4 MB through the file's scratch
     * buffers (kept until close: small) */
    int64_t per = (int64_t)(((size_t)(direct ? 16 : 4) << 20) / (size_t)(re ? re : 1) / es);
    if (per < 1) per = 1;
    if (per > rows) per = rows;
    size_t cap = (size_t)(per * re) * es + 1;
    char *sbuf[2] = {NULL, NULL};
    if (!direct) sbuf[0] = scratch(f, 0, cap), sbuf[1] = scratch(f, 1, cap);
    float *tmp = want_buf && !direct && want != DS_DTYPE_F32 && t->dtype != DS_DTYPE_F32
                     ? scratch(f, 2, sizeof(float) * (size_t)(per * re) + 1)
                     : NULL;
    ds_sha256_async *h = ds_sha256_async_new(ds_entry_digest_begin(t));
    int rc = 0, piece = 0;
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += per, piece++) {
        int64_t k = rows - r0 < per ? rows - r0 : per;
        size_t n = (size_t)(k * re);
        char *dst = direct ? (char *)want_buf + (size_t)(r0 * re) * es : sbuf[piece & 1];
        rc = ds_h5_read_rows(f->dsets[i], ds_h5_type(t->dtype), r0, t->ndim ? k : 1, dst);
        if (rc) break;
        ds_sha256_async_update(h, dst, n * es);
        if (!want_buf) continue;
        char *w = (char *)want_buf + (size_t)(r0 * re) * ws;
        if (direct) {
        } else if (want == DS_DTYPE_F32) {
            ds_to_f32(t->dtype, dst, (float *)w, n);
        } else if (t->dtype == DS_DTYPE_F32) {
            ds_from_f32(want, (const float *)dst, w, n);
        } else {
            ds_to_f32(t->dtype, dst, tmp, n);
            ds_from_f32(want, tmp, w, n);
        }
        /* the piece is in want_buf: the caller's use of it (export writes
         * it) overlaps its digest */
        if (fn) rc = fn(arg, (size_t)(r0 * re) * ws, n * ws);
    }
    ds_sha256_final(ds_sha256_async_end(h), out);
    return rc;
}

static int mismatch(const char *path, const char *name)
{
    return ds_err(DS_EXIT_INPUT, "%s: tensor %s: data does not match its recorded sha256 (damaged or altered file; "
                  "--no-verify skips this check)", path, name);
}

/* Collective, at open: a file written before per-tensor digests (some
 * tensor has none) is checked whole against its content_sha256, each rank
 * digesting every size-th tensor. */
static int verify_legacy(ds_model_file *f)
{
    int n = f->meta.n_tensors, all = 1;
    for (int i = 0; i < n; i++) all &= f->has_rec[i];
    if (all || !ds_verify_enabled() || !f->meta.content_sha256[0]) return 0;
    ds_named_digest *dg = ds_malloc(sizeof *dg * (size_t)(n ? n : 1));
    int nd = 0, rc = 0;
    for (int i = f->ctx.rank; i < n && !rc; i += f->ctx.size) {
        snprintf(dg[nd].name, sizeof dg[nd].name, "%s", f->meta.tensors[i].name);
        rc = digest_tensor(f, i, DS_DTYPE_F32, NULL, &dg[nd++].digest, NULL, NULL);
    }
    rc = ds_content_hash_verify(&f->ctx, f->path, rc, nd, dg, f->meta.content_sha256);
    free(dg);
    return rc;
}

int ds_model_open(const char *path, MPI_Comm comm, ds_model_file **out)
{
    ds_model_file *f = model_new(path, comm);
    *out = NULL;
    int rc = ds_h5_open(path, comm, &f->file);
    if (!rc) rc = read_meta(f);
    rc = ds_ctx_agree(&f->ctx, rc);
    if (!rc) rc = ds_ctx_agree(&f->ctx, verify_legacy(f));
    if (rc) {
        close_objects(f);
        if (f->file >= 0) H5Fclose(f->file);
        model_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

static int tensor_index(ds_model_file *f, const char *name)
{
    int i = ds_model_find(f, name);
    if (i < 0) return -ds_err(DS_EXIT_INPUT, "%s: tensor %s: not in this checkpoint", f->path, name);
    return i;
}

/* Whether a read of tensor i hashes it: to check it (verification on and a
 * digest recorded; *check) or to give a digest the file does not record yet
 * (want_digest). Else a given digest is the recorded one (with --no-verify:
 * trusted, as the option says). */
static int must_hash(const ds_model_file *f, int i, int want_digest, int *check)
{
    *check = !f->writing && f->has_rec[i] && ds_verify_enabled();
    return *check || (want_digest && (f->writing || !f->has_rec[i]));
}

/* A whole tensor i into buf (as want), fn called on each piece read; its
 * digest into *digest when digest is given (with --no-verify, the recorded
 * one where the file has it: trusted, as --no-verify says), checked against
 * the recorded one when verifying. */
static int read_whole(ds_model_file *f, int i, ds_dtype want, void *buf, ds_digest *digest, ds_model_piece_fn fn,
                      void *arg)
{
    const ds_tinfo *t = &f->meta.tensors[i];
    if (!is_model_dtype(want))
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: cannot read as %s", f->path, t->name, ds_dtype_name(want));
    int check;
    if (!must_hash(f, i, digest != NULL, &check)) {
        int rc = ds_h5_read_rows_conv(f->dsets[i], t->dtype, want, 0, t->ndim ? t->shape[0] : 1, buf);
        if (!rc && digest) *digest = f->rec[i];
        if (!rc && fn) rc = fn(arg, 0, (size_t)ds_tinfo_numel(t) * ds_dtype_size(want));
        return rc;
    }
    ds_digest d;
    int rc = digest_tensor(f, i, want, buf, &d, fn, arg);
    if (!rc && check && memcmp(d.b, f->rec[i].b, 32) != 0) rc = mismatch(f->path, t->name);
    if (!rc && digest) *digest = d;
    return rc;
}

int ds_model_read_rows(ds_model_file *f, const char *name, ds_dtype want, int64_t row0, int64_t nrows, void *buf)
{
    int i = tensor_index(f, name);
    if (i < 0) return -i;
    if (!is_model_dtype(want))
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: cannot read as %s", f->path, name, ds_dtype_name(want));
    const ds_tinfo *t = &f->meta.tensors[i];
    if (row0 == 0 && nrows == (t->ndim ? t->shape[0] : 1)) return read_whole(f, i, want, buf, NULL, NULL, NULL);
    return ds_h5_read_rows_conv(f->dsets[i], t->dtype, want, row0, nrows, buf);
}

struct ds_model_read_job {
    ds_model_file *f;
    int i, rc, check;
    ds_sha256_async *h; /* hashing in flight, or NULL */
    ds_digest d;
};

int ds_model_read_begin(ds_model_file *f, const char *name, ds_dtype want, void *buf, int want_digest,
                        ds_model_read_job **job)
{
    ds_model_read_job *j = ds_calloc(1, sizeof *j);
    *job = j;
    j->f = f;
    j->i = tensor_index(f, name);
    if (j->i < 0) return j->rc = -j->i;
    const ds_tinfo *t = &f->meta.tensors[j->i];
    if (!must_hash(f, j->i, want_digest, &j->check) || want != t->dtype)
        return j->rc = read_whole(f, j->i, want, buf, want_digest ? &j->d : NULL, NULL, NULL);
    j->rc = ds_h5_read_rows(f->dsets[j->i], ds_h5_type(t->dtype), 0, t->ndim ? t->shape[0] : 1, buf);
    if (j->rc) return j->rc;
    j->h = ds_sha256_async_new(ds_entry_digest_begin(t));
    ds_sha256_async_update(j->h, buf, ds_tinfo_bytes(t));
    return 0;
}

int ds_model_read_end(ds_model_read_job *j, ds_digest *digest)
{
    if (!j) return 0;
    int rc = j->rc;
    if (j->h) {
        ds_sha256_final(ds_sha256_async_end(j->h), &j->d);
        if (!rc && j->check && memcmp(j->d.b, j->f->rec[j->i].b, 32) != 0)
            rc = mismatch(j->f->path, j->f->meta.tensors[j->i].name);
    }
    if (!rc && digest) *digest = j->d;
    free(j);
    return rc;
}

struct ds_model_row_reader {
    ds_model_file *f;
    int i, rc, check;
    int64_t next;       /* the next row to read */
    ds_sha256_async *h; /* hashing, or NULL */
};

int ds_model_rows_begin(ds_model_file *f, const char *name, int want_digest, ds_model_row_reader **out)
{
    ds_model_row_reader *r = ds_calloc(1, sizeof *r);
    *out = r;
    r->f = f;
    r->i = tensor_index(f, name);
    if (r->i < 0) return r->rc = -r->i;
    if (must_hash(f, r->i, want_digest, &r->check))
        r->h = ds_sha256_async_new(ds_entry_digest_begin(&f->meta.tensors[r->i]));
    return 0;
}

int ds_model_rows_next(ds_model_row_reader *r, int64_t nrows, void *buf)
{
    if (r->rc) return r->rc;
    const ds_tinfo *t = &r->f->meta.tensors[r->i];
    int64_t re = 1;
    for (int k = 1; k < t->ndim; k++) re *= t->shape[k];
    if ((r->rc = ds_h5_read_rows(r->f->dsets[r->i], ds_h5_type(t->dtype), r->next, t->ndim ? nrows : 1, buf)))
        return r->rc;
    r->next += nrows;
    if (r->h) ds_sha256_async_update(r->h, buf, (size_t)(nrows * re) * ds_dtype_size(t->dtype));
    return 0;
}

int ds_model_rows_end(ds_model_row_reader *r, ds_digest *digest)
{
    if (!r) return 0;
    int rc = r->rc;
    if (r->i >= 0) {
        const ds_tinfo *t = &r->f->meta.tensors[r->i];
        ds_digest d = r->f->rec[r->i];
        if (r->h) ds_sha256_final(ds_sha256_async_end(r->h), &d);
        /* a reader the caller stopped early (after another error) has no digest */
        if (r->next == (t->ndim ? t->shape[0] : 1)) {
            if (!rc && r->check && memcmp(d.b, r->f->rec[r->i].b, 32) != 0) rc = mismatch(r->f->path, t->name);
            if (!rc && digest) *digest = d;
        }
    }
    free(r);
    return rc;
}

int ds_model_read_tensor_pieces(ds_model_file *f, const char *name, ds_dtype want, void *buf, ds_model_piece_fn fn,
                                void *arg)
{
    int i = tensor_index(f, name);
    return i < 0 ? -i : read_whole(f, i, want, buf, NULL, fn, arg);
}

int ds_model_read_tensor(ds_model_file *f, const char *name, ds_dtype want, void *buf)
{
    int i = tensor_index(f, name);
    return i < 0 ? -i : read_whole(f, i, want, buf, NULL, NULL, NULL);
}

/* One 1-D tokenizer dataset of length n (-1: any); *len receives it. */
static int tok_dataset(ds_model_file *f, const char *name, int64_t n, hid_t *d, int64_t *len)
{
    int nd, rc;
    int64_t shape[DS_MAX_DIMS];
    if ((rc = ds_h5_dataset_open(f->tokgrp, name, d)) || (rc = ds_h5_dataset_shape(*d, &nd, shape))) return rc;
    if (nd != 1 || (n >= 0 && shape[0] != n))
        return ds_err(DS_EXIT_INPUT, "%s: tokenizer/%s: wrong shape (expected [%lld])", f->path, name, (long long)n);
    *len = shape[0];
    return 0;
}

/* One stored file of a Hugging Face tokenizer: a 1-D uint8 dataset. */
static int tok_bytes(ds_model_file *f, const char *name, char **data, size_t *len)
{
    hid_t d = H5I_INVALID_HID;
    int64_t n = 0;
    int rc = tok_dataset(f, name, -1, &d, &n);
    if (!rc) {
        *data = ds_malloc((size_t)n + 1);
        (*data)[n] = 0;
        *len = (size_t)n;
        rc = n ? ds_h5_read_rows(d, H5T_NATIVE_UINT8, 0, n, *data) : 0;
    }
    if (d > 0) H5Dclose(d);
    return rc;
}

int ds_model_read_tokenizer_files(ds_model_file *f, ds_tok_files *tf)
{
    memset(tf, 0, sizeof *tf);
    if (!f->meta.tokenizer_hf)
        return ds_err(DS_EXIT_INPUT, "%s: no Hugging Face tokenizer in this checkpoint", f->path);
    int rc = tok_bytes(f, "tokenizer_json", &tf->json, &tf->json_len);
    if (!rc && ds_h5_exists(f->tokgrp, "tokenizer_config_json"))
        rc = tok_bytes(f, "tokenizer_config_json", &tf->config, &tf->config_len);
    if (rc) ds_tok_files_free(tf);
    return rc;
}

static int read_tokenizer_hf(ds_model_file *f, ds_tokenizer *tok)
{
    ds_tok_files tf;
    char what[4200], name[64] = "";
    snprintf(what, sizeof what, "%s: tokenizer/tokenizer_json", f->path);
    int rc = ds_model_read_tokenizer_files(f, &tf);
    if (!rc && ds_h5_attr_exists(f->tokgrp, "chat_template_name"))
        rc = ds_h5_attr_get_str(f->tokgrp, "chat_template_name", name, sizeof name);
    if (!rc && strlen(name) >= sizeof tok->chat_template)
        rc = ds_err(DS_EXIT_INPUT, "%s: tokenizer: chat_template_name \"%s\" is not a built-in", f->path, name);
    if (!rc) rc = ds_tok_files_load(what, &tf, f->meta.cfg.vocab_size, tok);
    if (!rc) snprintf(tok->chat_template, sizeof tok->chat_template, "%s", name);
    ds_tok_files_free(&tf);
    return rc;
}

int ds_model_read_tokenizer(ds_model_file *f, ds_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    if (!f->meta.has_tokenizer) return ds_err(DS_EXIT_INPUT, "%s: no tokenizer in this checkpoint", f->path);
    if (f->meta.tokenizer_hf) return read_tokenizer_hf(f, tok);
    hid_t ds[3] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
    int64_t v, no, total, maxlen;
    float *scores = NULL;
    int64_t *off = NULL;
    char *bytes = NULL, **pieces = NULL;
    int *lengths = NULL;
    int rc = ds_h5_attr_get_int(f->tokgrp, "max_token_length", &maxlen);
    if (!rc) rc = tok_dataset(f, "scores", -1, &ds[0], &v);
    if (!rc && (v < 1 || v > f->meta.cfg.vocab_size))
        rc = ds_err(DS_EXIT_INPUT, "%s: tokenizer: %lld tokens for a vocabulary of %d", f->path, (long long)v,
                    f->meta.cfg.vocab_size);
    if (!rc) rc = tok_dataset(f, "offsets", v + 1, &ds[1], &no);
    if (!rc) rc = tok_dataset(f, "bytes", -1, &ds[2], &total);
    if (!rc) {
        scores = ds_malloc(sizeof(float) * (size_t)v);
        off = ds_malloc(sizeof(int64_t) * (size_t)(v + 1));
        bytes = ds_malloc((size_t)total + 1);
        rc = ds_h5_read_rows(ds[0], H5T_NATIVE_FLOAT, 0, v, scores);
        if (!rc) rc = ds_h5_read_rows(ds[1], H5T_NATIVE_INT64, 0, v + 1, off);
        if (!rc) rc = ds_h5_read_rows(ds[2], H5T_NATIVE_UINT8, 0, total, bytes);
    }
    for (int64_t i = 0; !rc && i < v; i++)
        if (off[0] != 0 || off[i + 1] < off[i] || off[i + 1] > total || (i == v - 1 && off[v] != total))
            rc = ds_err(DS_EXIT_INPUT, "%s: tokenizer: offsets are not increasing from 0 to %lld (token %lld)", f->path,
                        (long long)total, (long long)i);
    if (!rc && (maxlen < 1 || maxlen > 1 << 20))
        rc = ds_err(DS_EXIT_INPUT, "%s: tokenizer: max_token_length %lld out of range", f->path, (long long)maxlen);
    if (!rc) {
        pieces = ds_malloc(sizeof(char *) * (size_t)v);
        lengths = ds_malloc(sizeof(int) * (size_t)v);
        for (int64_t i = 0; i < v; i++) {
            pieces[i] = bytes + off[i];
            lengths[i] = (int)(off[i + 1] - off[i]);
        }
        rc = ds_tokenizer_from_arrays((int)v, (int)maxlen, (const char *const *)pieces, lengths, scores, tok);
        if (rc) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ds_errmsg());
            rc = ds_err(rc, "%s: %s", f->path, msg);
        }
    }
    for (int i = 0; i < 3; i++)
        if (ds[i] > 0) H5Dclose(ds[i]);
    free(scores);
    free(off);
    free(bytes);
    free(pieces);
    free(lengths);
    return rc;
}

void ds_model_close(ds_model_file *f)
{
    if (!f) return;
    close_objects(f);
    if (f->file >= 0) H5Fclose(f->file);
    model_free(f);
}

/* ---- write side */

static int write_tokenizer(ds_model_file *f, const ds_tokenizer *tok)
{
    int64_t v = tok->vocab_size, total = 0;
    for (int i = 0; i < tok->vocab_size; i++) total += tok->lengths ? tok->lengths[i] : (int64_t)strlen(tok->pieces[i]);
    hid_t ds[3] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
    int64_t n1 = v + 1;
    int rc = ds_h5_group_create(f->file, "tokenizer", &f->tokgrp);
    if (!rc) rc = ds_h5_attr_set_int(f->tokgrp, "max_token_length", tok->max_token_length);
    if (!rc) rc = ds_h5_dataset_create(f->tokgrp, "scores", H5T_IEEE_F32LE, 1, &v, &ds[0]);
    if (!rc) rc = ds_h5_dataset_create(f->tokgrp, "offsets", H5T_STD_I64LE, 1, &n1, &ds[1]);
    if (!rc) rc = ds_h5_dataset_create(f->tokgrp, "bytes", H5T_STD_U8LE, 1, &total, &ds[2]);
    /* The data is small: rank 0 writes it. */
    if (!rc && f->ctx.rank == 0) {
        int64_t *off = ds_malloc(sizeof(int64_t) * (size_t)n1);
        char *bytes = ds_malloc((size_t)total + 1);
        off[0] = 0;
        for (int i = 0; i < tok->vocab_size; i++) {
            int64_t len = tok->lengths ? tok->lengths[i] : (int64_t)strlen(tok->pieces[i]);
            memcpy(bytes + off[i], tok->pieces[i], (size_t)len);
            off[i + 1] = off[i] + len;
        }
        rc = ds_h5_write_rows(ds[0], H5T_NATIVE_FLOAT, 0, v, tok->scores);
        if (!rc) rc = ds_h5_write_rows(ds[1], H5T_NATIVE_INT64, 0, n1, off);
        if (!rc) rc = ds_h5_write_rows(ds[2], H5T_NATIVE_UINT8, 0, total, bytes);
        free(off);
        free(bytes);
    }
    for (int i = 0; i < 3; i++)
        if (ds[i] > 0) H5Dclose(ds[i]);
    return rc;
}

/* A uint8 dataset of the tokenizer group; rank 0 writes the bytes. */
static int write_tok_bytes(ds_model_file *f, const char *name, const char *data, size_t len)
{
    hid_t d = H5I_INVALID_HID;
    int64_t n = (int64_t)len;
    int rc = ds_h5_dataset_create(f->tokgrp, name, H5T_STD_U8LE, 1, &n, &d);
    if (!rc && f->ctx.rank == 0 && n) rc = ds_h5_write_rows(d, H5T_NATIVE_UINT8, 0, n, data);
    if (d > 0) H5Dclose(d);
    return rc;
}

/* The Hugging Face form: the files whole, and the fields that matter as
 * attributes (docs/formats.md). The chat template's text is an attribute
 * when it is no built-in's and small enough for one (it is in
 * tokenizer_config_json either way). */
static int write_tokenizer_hf(ds_model_file *f, const ds_tokenizer *tok, const ds_tok_files *tf)
{
    ds_tok_config c;
    hid_t g;
    int rc = ds_tok_config_parse(f->path, tf, &c);
    if (rc) return rc;
    if (!(rc = ds_h5_group_create(f->file, "tokenizer", &f->tokgrp))) {
        g = f->tokgrp;
        if (!rc) rc = ds_h5_attr_set_str(g, "format", "hf");
        if (!rc) rc = write_tok_bytes(f, "tokenizer_json", tf->json, tf->json_len);
        if (!rc && tf->config) rc = write_tok_bytes(f, "tokenizer_config_json", tf->config, tf->config_len);
        if (!rc) rc = ds_h5_attr_set_str(g, "bos_token", c.bos_token);
        if (!rc) rc = ds_h5_attr_set_str(g, "eos_token", c.eos_token);
        if (!rc) rc = ds_h5_attr_set_int(g, "bos_token_id", tok->bos_id);
        if (!rc) rc = ds_h5_attr_set_int(g, "eos_token_id", tok->eos_id);
        if (!rc) rc = ds_h5_attr_set_int(g, "add_bos_token", c.add_bos_token);
        if (!rc) rc = ds_h5_attr_set_int(g, "n_ids", tok->vocab_size);
        if (!rc) rc = ds_h5_attr_set_str(g, "chat_template_name", tok->chat_template);
        if (!rc && c.chat_template && !tok->chat_template[0] && strlen(c.chat_template) <= 32768)
            rc = ds_h5_attr_set_str(g, "chat_template", c.chat_template);
    }
    ds_tok_config_free(&c);
    return rc;
}

static int write_header(ds_model_file *f, const ds_config *c)
{
    hid_t r = f->file;
    int rc;
    if ((rc = ds_h5_attr_set_str(r, "format", DS_MODEL_FORMAT)) ||
        (rc = ds_h5_attr_set_int(r, "format_version", DS_MODEL_FORMAT_VERSION)) ||
        (rc = ds_h5_attr_set_str(r, "architecture", "llama")) || (rc = ds_h5_attr_set_int(r, "dim", c->dim)) ||
        (rc = ds_h5_attr_set_int(r, "hidden_dim", c->hidden_dim)) ||
        (rc = ds_h5_attr_set_int(r, "n_layers", c->n_layers)) || (rc = ds_h5_attr_set_int(r, "n_heads", c->n_heads)) ||
        (rc = ds_h5_attr_set_int(r, "n_kv_heads", c->n_kv_heads)) ||
        (rc = ds_h5_attr_set_int(r, "vocab_size", c->vocab_size)) ||
        (rc = ds_h5_attr_set_int(r, "max_seq_len", c->max_seq_len)) ||
        (rc = ds_h5_attr_set_float(r, "norm_eps", c->norm_eps)) ||
        (rc = ds_h5_attr_set_float(r, "rope_theta", c->rope_theta)) ||
        (rc = ds_h5_attr_set_int(r, "tied_embeddings", c->tied_embeddings ? 1 : 0)))
        return rc;
    /* Written only when the config has them: other files stay as before. */
    if (c->rope_scaling != DS_ROPE_NONE &&
        ((rc = ds_h5_attr_set_str(r, "rope_scaling", ds_rope_kind_name(c->rope_scaling))) ||
         (rc = ds_h5_attr_set_float(r, "rope_scaling_factor", c->rope_factor))))
        return rc;
    if (c->rope_scaling == DS_ROPE_LLAMA3 &&
        ((rc = ds_h5_attr_set_float(r, "rope_scaling_low_freq_factor", c->rope_low_freq_factor)) ||
         (rc = ds_h5_attr_set_float(r, "rope_scaling_high_freq_factor", c->rope_high_freq_factor)) ||
         (rc = ds_h5_attr_set_int(r, "rope_scaling_original_max_position_embeddings", c->rope_original_max_pos))))
        return rc;
    if ((rc = ids_attr_set(r, "bos_token_id", c->bos_ids, c->n_bos, c->bos_is_list))) return rc;
    return ids_attr_set(r, "eos_token_id", c->eos_ids, c->n_eos, c->eos_is_list);
}

/* Close every HDF5 object and the file; remove the temporary file. */
static void discard_tmp(ds_model_file *f)
{
    close_objects(f);
    if (f->file >= 0) H5Fclose(f->file);
    f->file = H5I_INVALID_HID;
    MPI_Barrier(f->ctx.comm);
    if (f->ctx.rank == 0) {
        char tmp[4200];
        ds_out_tmpname(f->path, tmp, sizeof tmp);
        unlink(tmp);
    }
    MPI_Barrier(f->ctx.comm);
    model_free(f);
}

int ds_model_create(const char *path, MPI_Comm comm, const ds_config *cfg, int n, const ds_tinfo *tensors,
                    const ds_tokenizer *tok, int overwrite, ds_model_file **out)
{
    ds_model_file *f = model_new(path, comm);
    *out = NULL;
    f->writing = 1;
    f->meta.format_version = DS_MODEL_FORMAT_VERSION;
    f->meta.cfg = *cfg;
    f->meta.n_tensors = n;
    f->meta.tensors = ds_malloc(sizeof(ds_tinfo) * (size_t)(n ? n : 1));
    memcpy(f->meta.tensors, tensors, sizeof(ds_tinfo) * (size_t)n);
    qsort(f->meta.tensors, (size_t)n, sizeof(ds_tinfo), cmp_tinfo);
    f->meta.has_tokenizer = tok != NULL;
    f->meta.tokenizer_hf = tok && tok->hf;
    int rc = ds_config_check(cfg, path);
    if (!rc) rc = check_tensors(path, cfg, n, f->meta.tensors);
    if (!rc && tok && (tok->vocab_size < 1 || tok->vocab_size > cfg->vocab_size))
        rc = ds_err(DS_EXIT_INPUT, "%s: tokenizer has %d pieces for a vocabulary of %d", path, tok->vocab_size,
                    cfg->vocab_size);
    const ds_tok_files *tf = tok && tok->hf ? ds_tok_files_of(tok) : NULL;
    if (!rc && tok && tok->hf && !tf)
        rc = ds_err(DS_EXIT_FAIL, "%s: the Hugging Face tokenizer's files are not known (not loaded with "
                    "ds_tok_files_load): cannot store it", path);
    if ((rc = ds_ctx_agree(&f->ctx, rc))) {
        model_free(f);
        return rc;
    }
    if ((rc = ds_out_begin(&f->ctx, path, overwrite))) {
        model_free(f);
        return rc;
    }
    char tmp[4200];
    ds_out_tmpname(path, tmp, sizeof tmp);
    rc = ds_h5_create(tmp, comm, &f->file);
    if ((rc = ds_ctx_agree(&f->ctx, rc))) {
        discard_tmp(f);
        return rc;
    }
    f->dsets = ds_malloc(sizeof(hid_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) f->dsets[i] = H5I_INVALID_HID;
    f->written = ds_calloc((size_t)(n ? n : 1), 1);
    f->digests = ds_malloc(sizeof(ds_named_digest) * (size_t)(n ? n : 1));
    rc = write_header(f, cfg);
    if (!rc) rc = ds_h5_group_create(f->file, "tensors", &f->tensors);
    for (int i = 0; i < n && !rc; i++) {
        const ds_tinfo *t = &f->meta.tensors[i];
        rc = ds_h5_dataset_create(f->tensors, t->name, ds_h5_type(t->dtype), t->ndim, t->shape, &f->dsets[i]);
    }
    if (!rc && tok) rc = tf ? write_tokenizer_hf(f, tok, tf) : write_tokenizer(f, tok);
    if ((rc = ds_ctx_agree(&f->ctx, rc))) {
        discard_tmp(f);
        return rc;
    }
    *out = f;
    return 0;
}

int ds_model_write_tensor(ds_model_file *f, const char *name, ds_dtype src, const void *data)
{
    int i = tensor_index(f, name);
    if (i < 0) return -i;
    const ds_tinfo *t = &f->meta.tensors[i];
    if (!f->writing) return ds_err(DS_EXIT_FAIL, "%s: tensor %s: file is open for reading", f->path, name);
    if (f->written[i]) return ds_err(DS_EXIT_FAIL, "%s: tensor %s: written twice", f->path, name);
    if (!is_model_dtype(src))
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: cannot write from %s", f->path, name, ds_dtype_name(src));
    const void *stored = data;
    void *conv = NULL;
    size_t n = (size_t)ds_tinfo_numel(t);
    if (src != t->dtype) {
        /* Convert with deltasoup's rounding (not HDF5's) and keep the result:
         * the content hash is over the stored values. */
        conv = scratch(f, 0, ds_tinfo_bytes(t));
        if (src == DS_DTYPE_F32) {
            ds_from_f32(t->dtype, data, conv, n);
        } else if (t->dtype == DS_DTYPE_F32) {
            ds_to_f32(src, data, conv, n);
        } else {
            const size_t piece = (size_t)1 << 20;
            float *tmp = scratch(f, 1, sizeof(float) * (n < piece ? n : piece));
            for (size_t o = 0; o < n; o += piece) {
                size_t k = n - o < piece ? n - o : piece;
                ds_to_f32(src, (const char *)data + o * ds_dtype_size(src), tmp, k);
                ds_from_f32(t->dtype, tmp, (char *)conv + o * ds_dtype_size(t->dtype), k);
            }
        }
        stored = conv;
    }
    /* the digest of the stored values is computed while they are written */
    ds_sha256_async *h = ds_sha256_async_new(ds_entry_digest_begin(t));
    ds_sha256_async_update(h, stored, ds_tinfo_bytes(t));
    int rc = ds_h5_write_rows(f->dsets[i], ds_h5_type(t->dtype), 0, t->shape[0], stored);
    ds_digest dg;
    ds_sha256_final(ds_sha256_async_end(h), &dg);
    if (!rc) {
        ds_named_digest *d = &f->digests[f->n_digests++];
        strcpy(d->name, t->name);
        d->digest = dg;
        f->written[i] = 1;
    }
    return rc;
}

/* Collective: every tensor written by exactly one rank, then the hash;
 * *all (may be NULL) receives every rank's entry digests, sorted. */
static int model_hash_all(ds_model_file *f, ds_digest *out, ds_named_digest **all_dg, int *n_all)
{
    int n = f->meta.n_tensors;
    unsigned char *all = ds_malloc((size_t)(n ? n : 1));
    MPI_Allreduce(f->written, all, n, MPI_UNSIGNED_CHAR, MPI_MAX, f->ctx.comm);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (all[i] == 0) rc = ds_err(DS_EXIT_FAIL, "%s: tensor %s was never written", f->path, f->meta.tensors[i].name);
    free(all);
    int rc2 = ds_content_hash_all(&f->ctx, f->n_digests, f->digests, out, all_dg, n_all);
    return rc ? rc : rc2;
}

static int model_hash(ds_model_file *f, ds_digest *out) { return model_hash_all(f, out, NULL, NULL); }

/* Collective: attribute "sha256" (the entry digest, hex) on every dataset. */
static int write_recs(ds_model_file *f, const ds_named_digest *all, int n_all)
{
    int rc = 0;
    for (int i = 0, j = 0; i < f->meta.n_tensors && !rc; i++) {
        while (j < n_all && strcmp(all[j].name, f->meta.tensors[i].name) < 0) j++;
        if (j >= n_all || strcmp(all[j].name, f->meta.tensors[i].name) != 0)
            return ds_err(DS_EXIT_FAIL, "%s: tensor %s has no digest", f->path, f->meta.tensors[i].name);
        char hex[65];
        ds_digest_hex(&all[j].digest, hex);
        rc = ds_h5_attr_set_str(f->dsets[i], "sha256", hex);
    }
    return rc;
}

int ds_model_content_hash(ds_model_file *f, char hex[65])
{
    ds_digest d;
    int rc = model_hash(f, &d);
    ds_digest_hex(&d, hex);
    return ds_ctx_agree(&f->ctx, rc);
}

int ds_model_commit(ds_model_file *f, int rc, const char *content_sha256)
{
    char hex[65];
    rc = ds_ctx_agree(&f->ctx, rc);
    if (!rc) {
        ds_digest d;
        ds_named_digest *all = NULL;
        int n_all = 0;
        rc = model_hash_all(f, &d, &all, &n_all);
        ds_digest_hex(&d, hex);
        if (!rc) rc = write_recs(f, all, n_all);
        free(all);
        if (!rc && content_sha256 && strcmp(content_sha256, hex) != 0)
            rc = ds_err(DS_EXIT_FAIL, "%s: content hash %s given at commit differs from the data written (%s)", f->path,
                        content_sha256, hex);
        if (!rc) rc = ds_h5_attr_set_str(f->file, "content_sha256", hex);
        rc = ds_ctx_agree(&f->ctx, rc);
    }
    if (rc) {
        discard_tmp(f);
        return rc;
    }
    snprintf(f->meta.content_sha256, sizeof f->meta.content_sha256, "%s", hex);
    close_objects(f);
    rc = ds_h5_close(f->file);
    f->file = H5I_INVALID_HID;
    ds_ctx ctx = f->ctx;
    char path[4096];
    snprintf(path, sizeof path, "%s", f->path);
    model_free(f);
    return ds_out_finish(&ctx, path, rc);
}

int64_t ds_model_root(const ds_model_file *f) { return (int64_t)f->file; }

void ds_model_discard(ds_model_file *f)
{
    if (f) discard_tmp(f);
}
