/* BitDelta delta files (*.bd.h5) on the generic helpers of io/h5.h. */
#include "config.h"
#include "io/h5_delta.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_delta_rows.h"
#include "src/ctx.h"
#include "src/hash.h"

/* Parts of an entry, as bits of the written[] marks. */
enum { PART_SIGNS = 1, PART_SCALE = 2, PART_DENSE = 4 };

struct ds_delta_file {
    ds_ctx ctx; /* the communicator the file was opened on */
    char path[4096];
    hid_t file;
    ds_delta_meta meta;
    hid_t *signs, *scale, *dense; /* per entry; H5I_INVALID_HID where absent */
    /* write side: parts written by this rank and their digests */
    unsigned char *written;
    ds_named_digest *digests;
    int n_digests;
    /* read side: digests recorded at commit (attribute "sha256" of each
     * dataset), 3 per entry (signs, scale, dense); has_rec 0 where absent */
    ds_digest *rec;
    unsigned char *has_rec;
    /* scratch of conversions and whole-file checks, grown to the largest
     * need and kept until close (no allocation per entry) */
    void *scratch[2];
    size_t scratch_cap[2];
};

static void *scratch(ds_delta_file *f, int k, size_t n)
{
    if (n > f->scratch_cap[k]) {
        free(f->scratch[k]);
        f->scratch[k] = ds_buf_alloc(n);
        f->scratch_cap[k] = n;
    }
    return f->scratch[k];
}

/* Messages of collective calls are printed once by ds_ctx_agree under this
 * label (the library does not know the job's name), as io/h5_model.c does. */
#define DELTA_LABEL "io"

const ds_delta_meta *ds_delta_get_meta(const ds_delta_file *f) { return &f->meta; }
const char *ds_delta_path(const ds_delta_file *f) { return f->path; }

int ds_delta_find(const ds_delta_file *f, const char *name)
{
    int lo = 0, hi = f->meta.n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->meta.entries[mid].t.name, name);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

void ds_delta_entry_info(const ds_delta_entry *e, const char *part, ds_tinfo *out)
{
    memset(out, 0, sizeof *out);
    /* Tensor names are shorter than DS_NAME_MAX - 8 (ds_delta_create checks). */
    snprintf(out->name, sizeof out->name, "%.*s/%s", (int)sizeof out->name - 8, e->t.name, part);
    if (strcmp(part, "signs") == 0) {
        out->dtype = DS_DTYPE_U64;
        out->ndim = 2;
        out->shape[0] = e->rows;
        out->shape[1] = e->words_per_row;
    } else if (strcmp(part, "scale") == 0) {
        out->dtype = DS_DTYPE_F32;
        out->ndim = 1;
        out->shape[0] = e->n_scales;
    } else {
        out->dtype = e->t.dtype;
        out->ndim = e->t.ndim;
        memcpy(out->shape, e->t.shape, sizeof out->shape);
    }
}

static ds_delta_file *file_new(const char *path, MPI_Comm comm, int n)
{
    ds_delta_file *f = ds_calloc(1, sizeof *f);
    f->ctx.comm = comm;
    MPI_Comm_rank(comm, &f->ctx.rank);
    MPI_Comm_size(comm, &f->ctx.size);
    f->ctx.quiet = 1;
    f->ctx.job = DELTA_LABEL;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = H5I_INVALID_HID;
    f->signs = ds_malloc(sizeof(hid_t) * (size_t)(n ? n : 1));
    f->scale = ds_malloc(sizeof(hid_t) * (size_t)(n ? n : 1));
    f->dense = ds_malloc(sizeof(hid_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) f->signs[i] = f->scale[i] = f->dense[i] = H5I_INVALID_HID;
    return f;
}

/* Close every dataset and the file (collective); returns the file close status. */
static int file_free(ds_delta_file *f)
{
    int rc = 0;
    for (int i = 0; i < f->meta.n; i++) {
        if (f->signs[i] >= 0) H5Dclose(f->signs[i]);
        if (f->scale[i] >= 0) H5Dclose(f->scale[i]);
        if (f->dense[i] >= 0) H5Dclose(f->dense[i]);
    }
    if (f->file >= 0) rc = ds_h5_close(f->file);
    free(f->signs);
    free(f->scale);
    free(f->dense);
    free(f->written);
    free(f->digests);
    free(f->rec);
    free(f->has_rec);
    free(f->scratch[0]);
    free(f->scratch[1]);
    free(f->meta.entries);
    free(f);
    return rc;
}

/* Collective: close, remove NAME.tmp, free f. */
static void discard_tmp(ds_delta_file *f)
{
    ds_ctx ctx = f->ctx;
    char tmp[4200];
    ds_out_tmpname(f->path, tmp, sizeof tmp);
    file_free(f);
    if (ctx.rank == 0) unlink(tmp);
    MPI_Barrier(ctx.comm);
}

/* ---- the base config as root attributes (the same names as a checkpoint) */
static int config_write(hid_t file, const ds_config *c)
{
    int rc = 0;
    const struct { const char *k; int v; } ints[] = {
        {"dim", c->dim}, {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads}, {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"max_seq_len", c->max_seq_len}, {"tied_embeddings", c->tied_embeddings}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++) rc = ds_h5_attr_set_int(file, ints[i].k, ints[i].v);
    if (!rc) rc = ds_h5_attr_set_double(file, "norm_eps", c->norm_eps);
    if (!rc) rc = ds_h5_attr_set_double(file, "rope_theta", c->rope_theta);
    return rc;
}

static int config_read(hid_t file, ds_config *c)
{
    const char *k[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len", "tied_embeddings"};
    int *dst[] = {&c->dim, &c->hidden_dim, &c->n_layers, &c->n_heads, &c->n_kv_heads, &c->vocab_size, &c->max_seq_len, &c->tied_embeddings};
    for (int i = 0; i < 8; i++) {
        int64_t v;
        int rc = ds_h5_attr_get_int(file, k[i], &v);
        if (rc) return rc;
        *dst[i] = (int)v;
    }
    double e, t;
    int rc = ds_h5_attr_get_double(file, "norm_eps", &e);
    if (!rc) rc = ds_h5_attr_get_double(file, "rope_theta", &t);
    if (rc) return rc;
    c->norm_eps = (float)e;
    c->rope_theta = (float)t;
    return 0;
}

/* ---- write side */
static int create_objects(ds_delta_file *f)
{
    const ds_delta_meta *meta = &f->meta;
    int rc = ds_h5_attr_set_str(f->file, "format", DS_DELTA_FORMAT);
    if (!rc) rc = ds_h5_attr_set_int(f->file, "format_version", DS_DELTA_FORMAT_VERSION);
    if (!rc) rc = ds_h5_attr_set_str(f->file, "owner", meta->owner);
    if (!rc) rc = ds_h5_attr_set_str(f->file, "scale_fit", meta->scale_fit);
    if (!rc && meta->has_dp) rc = ds_h5_attr_set_double(f->file, "dp_epsilon", meta->dp_epsilon);
    if (!rc && meta->has_dp) rc = ds_h5_attr_set_double(f->file, "dp_delta", meta->dp_delta);
    if (!rc) rc = config_write(f->file, &meta->cfg);
    hid_t bits = H5I_INVALID_HID, dense = H5I_INVALID_HID;
    if (!rc) rc = ds_h5_group_create(f->file, "bits", &bits);
    if (!rc) rc = ds_h5_group_create(f->file, "dense", &dense);
    for (int i = 0; i < meta->n && !rc; i++) {
        const ds_delta_entry *e = &meta->entries[i];
        if (!e->coded) {
            rc = ds_h5_dataset_create(dense, e->t.name, ds_h5_type(e->t.dtype), e->t.ndim, e->t.shape, &f->dense[i]);
            continue;
        }
        hid_t g = H5I_INVALID_HID;
        int64_t sshape[2] = {e->rows, e->words_per_row};
        rc = ds_h5_group_create(bits, e->t.name, &g);
        if (!rc) rc = ds_h5_attr_set_str(g, "dtype", ds_dtype_name(e->t.dtype));
        if (!rc) rc = ds_h5_attr_set_int(g, "rows", e->rows);
        if (!rc) rc = ds_h5_attr_set_int(g, "cols", e->cols);
        if (!rc) rc = ds_h5_attr_set_str(g, "scale_mode", ds_scale_kind_name(e->mode));
        if (!rc) rc = ds_h5_dataset_create(g, "signs", ds_h5_type(DS_DTYPE_U64), 2, sshape, &f->signs[i]);
        if (!rc) rc = ds_h5_dataset_create(g, "scale", ds_h5_type(DS_DTYPE_F32), 1, &e->n_scales, &f->scale[i]);
        if (g >= 0) H5Gclose(g);
    }
    if (bits >= 0) H5Gclose(bits);
    if (dense >= 0) H5Gclose(dense);
    return rc;
}

static int check_meta(const char *path, const ds_delta_meta *meta)
{
    for (int i = 0; i < meta->n; i++) {
        const ds_delta_entry *e = &meta->entries[i];
        if (strlen(e->t.name) >= DS_NAME_MAX - 8)
            return ds_err(DS_EXIT_INPUT, "%s: tensor name too long: %s", path, e->t.name);
        if (strchr(e->t.name, '/'))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: '/' in a tensor name", path, e->t.name);
        if (i && strcmp(meta->entries[i - 1].t.name, e->t.name) >= 0)
            return ds_err(DS_EXIT_FAIL, "%s: tensor list not sorted at %s", path, e->t.name);
        if (e->coded && (e->t.ndim != 2 || e->rows != e->t.shape[0] || e->cols != e->t.shape[1]))
            return ds_err(DS_EXIT_FAIL, "%s: tensor %s: coded entry is not a 2-D plan", path, e->t.name);
    }
    return 0;
}

int ds_delta_create(const char *path, MPI_Comm comm, const ds_delta_meta *meta, int overwrite,
                    ds_delta_file **out)
{
    *out = NULL;
    ds_delta_file *f = file_new(path, comm, meta->n);
    f->meta = *meta;
    f->meta.content_sha256[0] = 0;
    f->meta.entries = ds_malloc(sizeof(ds_delta_entry) * (size_t)(meta->n ? meta->n : 1));
    memcpy(f->meta.entries, meta->entries, sizeof(ds_delta_entry) * (size_t)meta->n);
    f->written = ds_calloc((size_t)(meta->n ? meta->n : 1), 1);
    f->digests = ds_malloc(sizeof(ds_named_digest) * (size_t)(2 * meta->n + 1));
    int rc = ds_ctx_agree(&f->ctx, check_meta(path, meta));
    if (!rc) rc = ds_out_begin(&f->ctx, path, overwrite);
    if (rc) {
        file_free(f);
        return rc;
    }
    char tmp[4200];
    ds_out_tmpname(path, tmp, sizeof tmp);
    rc = ds_ctx_agree(&f->ctx, ds_h5_create(tmp, comm, &f->file));
    if (!rc) rc = ds_ctx_agree(&f->ctx, create_objects(f));
    if (rc) {
        discard_tmp(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Entry i has part p (coded or dense) and it was not written yet. */
static int check_write(ds_delta_file *f, int i, int p)
{
    if (i < 0 || i >= f->meta.n) return ds_err(DS_EXIT_FAIL, "%s: no entry %d", f->path, i);
    const ds_delta_entry *e = &f->meta.entries[i];
    if (!f->written) return ds_err(DS_EXIT_FAIL, "%s: tensor %s: file is open for reading", f->path, e->t.name);
    if (e->coded != (p != PART_DENSE))
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: is %s", f->path, e->t.name, e->coded ? "coded" : "dense");
    if (f->written[i] & p) return ds_err(DS_EXIT_FAIL, "%s: tensor %s: written twice", f->path, e->t.name);
    return 0;
}

static void part_info(const ds_delta_file *f, int i, int p, ds_tinfo *t)
{
    ds_delta_entry_info(&f->meta.entries[i], p == PART_SIGNS ? "signs" : p == PART_SCALE ? "scale" : "dense", t);
}

/* Record dg as the digest of part p of entry i and mark it written. */
static void record_part(ds_delta_file *f, int i, int p, const ds_tinfo *t, const ds_digest *dg)
{
    ds_named_digest *d = &f->digests[f->n_digests++];
    snprintf(d->name, sizeof d->name, "%s", t->name);
    d->digest = *dg;
    f->written[i] |= (unsigned char)p;
}

/* Digest part p of entry i (its data as stored) and mark it written. */
static void digest_part(ds_delta_file *f, int i, int p, const void *data)
{
    ds_tinfo t;
    ds_digest dg;
    part_info(f, i, p, &t);
    ds_entry_digest(&t, data, &dg);
    record_part(f, i, p, &t, &dg);
}

/* Write a part, its digest computed (on a second thread) while it is written. */
static int write_part(ds_delta_file *f, int i, int p, hid_t dset, hid_t memtype, int64_t nrows, const void *data)
{
    int rc = check_write(f, i, p);
    if (rc) return rc;
    ds_tinfo t;
    ds_digest dg;
    part_info(f, i, p, &t);
    ds_sha256_async *h = ds_sha256_async_new(ds_entry_digest_begin(&t));
    ds_sha256_async_update(h, data, ds_tinfo_bytes(&t));
    rc = ds_h5_write_rows(dset, memtype, 0, nrows, data);
    ds_sha256_final(ds_sha256_async_end(h), &dg);
    if (!rc) record_part(f, i, p, &t, &dg);
    return rc;
}

int ds_delta_write_signs(ds_delta_file *f, int i, const uint64_t *bits)
{
    if (i < 0 || i >= f->meta.n) return check_write(f, i, PART_SIGNS);
    return write_part(f, i, PART_SIGNS, f->signs[i], H5T_NATIVE_UINT64, f->meta.entries[i].rows, bits);
}

int ds_delta_write_scales(ds_delta_file *f, int i, const float *scales)
{
    if (i < 0 || i >= f->meta.n) return check_write(f, i, PART_SCALE);
    return write_part(f, i, PART_SCALE, f->scale[i], H5T_NATIVE_FLOAT, f->meta.entries[i].n_scales, scales);
}

int ds_delta_write_dense(ds_delta_file *f, int i, const void *data)
{
    if (i < 0 || i >= f->meta.n) return check_write(f, i, PART_DENSE);
    const ds_tinfo *t = &f->meta.entries[i].t;
    return write_part(f, i, PART_DENSE, f->dense[i], ds_h5_type(t->dtype), t->ndim ? t->shape[0] : 1, data);
}

static hid_t part_dset(ds_delta_file *f, int i, int k)
{
    return k == 0 ? f->signs[i] : k == 1 ? f->scale[i] : f->dense[i];
}

static const char *const part_names[3] = {"signs", "scale", "dense"};

/* Collective: attribute "sha256" on every dataset (all: every rank's
 * digests, sorted by name). */
static int write_recs(ds_delta_file *f, const ds_named_digest *all, int n_all)
{
    int rc = 0;
    for (int i = 0; i < f->meta.n && !rc; i++)
        for (int k = 0; k < 3 && !rc; k++) {
            hid_t d = part_dset(f, i, k);
            if (d < 0) continue;
            char key[DS_NAME_MAX + 8], hex[65];
            snprintf(key, sizeof key, "%s/%s", f->meta.entries[i].t.name, part_names[k]);
            int lo = 0, hi = n_all - 1, at = -1;
            while (lo <= hi) {
                int mid = (lo + hi) / 2, c = strcmp(all[mid].name, key);
                if (!c) { at = mid; break; }
                if (c < 0) lo = mid + 1; else hi = mid - 1;
            }
            if (at < 0) return ds_err(DS_EXIT_FAIL, "%s: %s has no digest", f->path, key);
            ds_digest_hex(&all[at].digest, hex);
            rc = ds_h5_attr_set_str(d, "sha256", hex);
        }
    return rc;
}

/* Collective: every part written (by some rank), then the content hash and
 * the per-dataset digests. */
static int delta_hash(ds_delta_file *f, char hex[65])
{
    int n = f->meta.n, rc = 0;
    unsigned char *all = ds_malloc((size_t)(n ? n : 1));
    MPI_Allreduce(f->written, all, n, MPI_UNSIGNED_CHAR, MPI_BOR, f->ctx.comm);
    for (int i = 0; i < n && !rc; i++) {
        int want = f->meta.entries[i].coded ? PART_SIGNS | PART_SCALE : PART_DENSE;
        if (all[i] != want) rc = ds_err(DS_EXIT_FAIL, "%s: tensor %s was never written", f->path, f->meta.entries[i].t.name);
    }
    free(all);
    ds_digest d;
    ds_named_digest *alld = NULL;
    int n_all = 0;
    int rc2 = ds_content_hash_all(&f->ctx, f->n_digests, f->digests, &d, &alld, &n_all);
    ds_digest_hex(&d, hex);
    if (!rc && !rc2) rc2 = write_recs(f, alld, n_all);
    free(alld);
    return rc ? rc : rc2;
}

int ds_delta_commit_staged(ds_delta_file *f, int rc, const char *base_sha256, char content_sha256[65])
{
    char hex[65] = "";
    ds_digest tmp;
    if (!base_sha256) base_sha256 = f->meta.base_sha256;
    if (!rc && ds_digest_parse(base_sha256, &tmp) != 0)
        rc = ds_ctx_agree(&f->ctx, ds_err(DS_EXIT_FAIL, "%s: base_sha256 '%s' is not a SHA-256 hex digest", f->path,
                                          base_sha256));
    if (!rc) rc = ds_ctx_agree(&f->ctx, delta_hash(f, hex));
    if (!rc) rc = ds_h5_attr_set_str(f->file, "base_sha256", base_sha256);
    if (!rc) rc = ds_h5_attr_set_str(f->file, "content_sha256", hex);
    if (rc) {
        discard_tmp(f);
        return rc;
    }
    if (content_sha256) memcpy(content_sha256, hex, 65);
    ds_ctx ctx = f->ctx;
    char tmpname[4200];
    ds_out_tmpname(f->path, tmpname, sizeof tmpname);
    rc = ds_ctx_agree(&ctx, file_free(f));
    if (rc && ctx.rank == 0) unlink(tmpname);
    return rc;
}

int64_t ds_delta_root(const ds_delta_file *f) { return (int64_t)f->file; }

int ds_delta_commit(ds_delta_file *f, int rc, const char *base_sha256, char content_sha256[65])
{
    ds_ctx ctx = f->ctx;
    char path[4096];
    snprintf(path, sizeof path, "%s", f->path);
    rc = ds_delta_commit_staged(f, rc, base_sha256, content_sha256);
    return rc ? rc : ds_out_finish(&ctx, path, 0);
}

/* ---- provenance of an aggregate */
int ds_delta_write_provenance(const char *path, const ds_delta_provenance *p)
{
    hid_t f, g = H5I_INVALID_HID;
    int rc = ds_h5_open_rw_serial(path, &f);
    if (rc) return rc;
    const size_t n = (size_t)p->n;
    rc = ds_h5_attr_set_str(f, "aggregate_method", p->method);
    if (!rc) rc = ds_h5_attr_set_str(f, "aggregate_params", p->params);
    if (!rc) rc = ds_h5_attr_set_str(f, "aggregate_version_sha256", p->version_sha256);
    if (!rc) rc = ds_h5_attr_set_int(f, "aggregate_n_inputs", p->n);
    if (!rc) rc = ds_h5_attr_set_int(f, "aggregate_n_used", p->n_used);
    if (!rc) rc = ds_h5_group_create(f, "provenance", &g);
    if (!rc) rc = ds_h5_write_strings(g, "owner", n, p->owner);
    if (!rc) rc = ds_h5_write_strings(g, "content_sha256", n, p->content_sha256);
    if (!rc) rc = ds_h5_write_strings(g, "status", n, p->status);
    if (!rc) rc = ds_h5_write_strings(g, "reason", n, p->reason);
    if (!rc) rc = ds_h5_write_doubles(g, "weight", n, p->weight);
    if (!rc) rc = ds_h5_write_doubles(g, "kept_fraction", n, p->kept_fraction);
    if (!rc) rc = ds_h5_write_doubles(g, "krum_score", n, p->krum_score);
    if (g >= 0) H5Gclose(g);
    int rc2 = ds_h5_close(f);
    return rc ? rc : rc2;
}

int ds_delta_suspend(ds_delta_file *f)
{
    ds_ctx ctx = f->ctx;
    return ds_ctx_agree(&ctx, file_free(f));
}

/* ---- read side */
/* Read /bits/<name>: attributes and both datasets, checked against each other. */
static int open_coded(ds_delta_file *f, hid_t bits, const char *name, ds_delta_entry *e, hid_t *signs, hid_t *scale)
{
    hid_t g;
    char s[DS_NAME_MAX];
    int64_t rows, cols;
    ds_scale_kind mode;
    int rc = ds_h5_group_open(bits, name, &g);
    if (rc) return rc;
    memset(e, 0, sizeof *e);
    snprintf(e->t.name, sizeof e->t.name, "%s", name);
    e->t.ndim = 2;
    rc = ds_h5_attr_get_str(g, "dtype", s, sizeof s);
    if (!rc && (ds_dtype_parse(s, &e->t.dtype) != 0 || (e->t.dtype != DS_DTYPE_F32 && e->t.dtype != DS_DTYPE_F16 && e->t.dtype != DS_DTYPE_BF16)))
        rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: source dtype '%s' is not F32, F16 or BF16", f->path, name, s);
    if (!rc) rc = ds_h5_attr_get_int(g, "rows", &rows);
    if (!rc) rc = ds_h5_attr_get_int(g, "cols", &cols);
    if (!rc && (rows < 1 || cols < 1 || rows > DS_MAX_NUMEL || cols > DS_MAX_NUMEL / rows))
        rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: bad shape [%lld, %lld]", f->path, name, (long long)rows, (long long)cols);
    if (!rc) rc = ds_h5_attr_get_str(g, "scale_mode", s, sizeof s);
    if (!rc && ds_scale_kind_parse(s, &mode) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: unknown scale_mode '%s'", f->path, name, s);
    if (!rc) {
        e->t.shape[0] = rows;
        e->t.shape[1] = cols;
        ds_delta_entry_code(e, mode);
        rc = ds_h5_dataset_open(g, "signs", signs);
    }
    if (!rc) rc = ds_h5_dataset_open(g, "scale", scale);
    H5Gclose(g);
    if (rc) return rc;
    /* The datasets must be exactly what the attributes promise. */
    ds_tinfo want[2];
    ds_delta_entry_info(e, "signs", &want[0]);
    ds_delta_entry_info(e, "scale", &want[1]);
    hid_t ds[2] = {*signs, *scale};
    for (int k = 0; k < 2; k++) {
        ds_tinfo got = {.ndim = 0};
        ds_dtype dt;
        int nd;
        if (ds_h5_dtype_of(ds[k], &dt) != 0 || dt != want[k].dtype ||
            ds_h5_dataset_shape(ds[k], &nd, got.shape) != 0 ||
            nd != want[k].ndim || memcmp(got.shape, want[k].shape, sizeof(int64_t) * (size_t)nd) != 0) {
            char sh[96];
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dataset %s is not %s %s", f->path, name,
                          k ? "scale" : "signs", ds_dtype_name(want[k].dtype), ds_shape_str(&want[k], sh, sizeof sh));
        }
    }
    return 0;
}

static int open_dense(ds_delta_file *f, hid_t dense, const char *name, ds_delta_entry *e, hid_t *d)
{
    memset(e, 0, sizeof *e);
    snprintf(e->t.name, sizeof e->t.name, "%s", name);
    int rc = ds_h5_dataset_open(dense, name, d);
    if (rc) return rc;
    ds_dtype dt;
    if (ds_h5_dtype_of(*d, &dt) != 0 || (dt != DS_DTYPE_F32 && dt != DS_DTYPE_F16 && dt != DS_DTYPE_BF16))
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dense delta is not F32, F16 or BF16", f->path, name);
    e->t.dtype = dt;
    return ds_h5_dataset_shape(*d, &e->t.ndim, e->t.shape);
}

/* The entries of /bits and /dense, sorted by name, their datasets opened. */
static int read_entries(ds_delta_file *f)
{
    const char *path = f->path;
    ds_delta_meta *m = &f->meta;
    hid_t bits = H5I_INVALID_HID, dense = H5I_INVALID_HID;
    int nb = 0, nd = 0;
    char **bn = NULL, **dn = NULL;
    int rc = ds_h5_group_open(f->file, "bits", &bits);
    if (!rc) rc = ds_h5_group_open(f->file, "dense", &dense);
    if (!rc) rc = ds_h5_group_list(bits, &nb, &bn);
    if (!rc) rc = ds_h5_group_list(dense, &nd, &dn);
    if (!rc) {
        size_t n = (size_t)(nb + nd + 1);
        m->entries = ds_calloc(n, sizeof(ds_delta_entry));
        f->signs = ds_realloc(f->signs, n * sizeof(hid_t));
        f->scale = ds_realloc(f->scale, n * sizeof(hid_t));
        f->dense = ds_realloc(f->dense, n * sizeof(hid_t));
        for (size_t i = 0; i < n; i++) f->signs[i] = f->scale[i] = f->dense[i] = H5I_INVALID_HID;
    }
    /* Merge the two sorted name lists, so that entries come sorted by name. */
    int a = 0, b = 0;
    while (!rc && (a < nb || b < nd)) {
        int c = a >= nb ? 1 : b >= nd ? -1 : strcmp(bn[a], dn[b]);
        int i = m->n++; /* counted before the open, so that file_free closes what is open */
        if (c == 0)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s is both in /bits and in /dense", path, bn[a]);
        else if (c < 0)
            rc = open_coded(f, bits, bn[a++], &m->entries[i], &f->signs[i], &f->scale[i]);
        else
            rc = open_dense(f, dense, dn[b++], &m->entries[i], &f->dense[i]);
    }
    if (bits >= 0) H5Gclose(bits);
    if (dense >= 0) H5Gclose(dense);
    ds_h5_names_free(nb, bn);
    ds_h5_names_free(nd, dn);
    return rc;
}

/* Root attributes and the two groups' contents of an open file. */
static int read_structure(ds_delta_file *f)
{
    const char *path = f->path;
    hid_t file = f->file;
    ds_delta_meta *m = &f->meta;
    char fmt[DS_NAME_MAX] = "";
    int64_t version = 0;
    if (!ds_h5_attr_exists(file, "format") || ds_h5_attr_get_str(file, "format", fmt, sizeof fmt) != 0 ||
        strcmp(fmt, DS_DELTA_FORMAT) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: not a deltasoup delta file (format '%s', expected '%s')", path, fmt,
                      DS_DELTA_FORMAT);
    int rc = ds_h5_attr_get_int(file, "format_version", &version);
    if (!rc && (version < 1 || version > DS_DELTA_FORMAT_VERSION))
        rc = ds_err(DS_EXIT_INPUT, "%s: delta format_version %lld is not one this deltasoup reads (1..%d)", path,
                    (long long)version, DS_DELTA_FORMAT_VERSION);
    m->format_version = (int)version;
    if (!rc) rc = ds_h5_attr_get_str(file, "base_sha256", m->base_sha256, sizeof m->base_sha256);
    if (!rc) rc = ds_h5_attr_get_str(file, "owner", m->owner, sizeof m->owner);
    if (!rc) rc = ds_h5_attr_get_str(file, "scale_fit", m->scale_fit, sizeof m->scale_fit);
    if (!rc && ds_h5_attr_exists(file, "content_sha256"))
        rc = ds_h5_attr_get_str(file, "content_sha256", m->content_sha256, sizeof m->content_sha256);
    if (!rc && ds_h5_attr_exists(file, "dp_epsilon")) {
        m->has_dp = 1;
        rc = ds_h5_attr_get_double(file, "dp_epsilon", &m->dp_epsilon);
        if (!rc) rc = ds_h5_attr_get_double(file, "dp_delta", &m->dp_delta);
    }
    if (!rc) rc = config_read(file, &m->cfg);
    ds_digest dg;
    if (!rc && ds_digest_parse(m->base_sha256, &dg) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: base_sha256 '%s' is not a SHA-256 hex digest", path, m->base_sha256);
    return rc ? rc : read_entries(f);
}

/* ---- resuming a suspended write */
/* Collective: open NAME.tmp read-write with the MPI-IO driver (io/h5.h has
 * only the read-only and the create opens). */
static int open_rw(const char *tmp, MPI_Comm comm, hid_t *file)
{
    ds_h5_quiet();
    *file = H5I_INVALID_HID;
    if (!ds_h5_is_hdf5(tmp)) return ds_err(DS_EXIT_INPUT, "%s: partial output missing or not HDF5", tmp);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_coll_metadata_write(fapl, 1);
    *file = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
    char detail[512];
    ds_h5_errdetail(detail, sizeof detail); /* before H5Pclose clears the stack */
    H5Pclose(fapl);
    return *file < 0 ? ds_err(DS_EXIT_INPUT, "%s: cannot reopen the partial output: %s", tmp, detail) : 0;
}

/* The staged file holds exactly meta's tensors, with their coding and shapes. */
static int check_staged(ds_delta_file *f, const ds_delta_meta *meta)
{
    char tmp[4200], fmt[DS_NAME_MAX] = "";
    ds_out_tmpname(f->path, tmp, sizeof tmp);
    if (!ds_h5_attr_exists(f->file, "format") || ds_h5_attr_get_str(f->file, "format", fmt, sizeof fmt) != 0 ||
        strcmp(fmt, DS_DELTA_FORMAT) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: partial output is not a deltasoup delta file", tmp);
    int rc = read_entries(f);
    if (rc) return rc;
    /* the staged tensors under the job's config: only the entries can differ */
    ds_delta_meta staged = *meta;
    staged.n = f->meta.n;
    staged.entries = f->meta.entries;
    return ds_delta_same_layout("this job's output", meta, tmp, &staged);
}

/* Read back entry i as stored and digest it, as if this rank had written it. */
static int redigest(ds_delta_file *f, int i)
{
    const ds_delta_entry *e = &f->meta.entries[i];
    int rc;
    if (e->coded) {
        uint64_t *bits = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
        float *sc = ds_malloc(sizeof(float) * (size_t)e->n_scales + 1);
        rc = ds_h5_read_rows(f->signs[i], H5T_NATIVE_UINT64, 0, e->rows, bits);
        if (!rc) rc = ds_h5_read_rows(f->scale[i], H5T_NATIVE_FLOAT, 0, e->n_scales, sc);
        if (!rc) digest_part(f, i, PART_SIGNS, bits);
        if (!rc) digest_part(f, i, PART_SCALE, sc);
        free(bits);
        free(sc);
    } else {
        void *buf = ds_malloc(ds_tinfo_bytes(&e->t) + 1);
        rc = ds_h5_read_rows(f->dense[i], ds_h5_type(e->t.dtype), 0, e->t.ndim ? e->t.shape[0] : 1, buf);
        if (!rc) digest_part(f, i, PART_DENSE, buf);
        free(buf);
    }
    return rc;
}

int ds_delta_resume(const char *path, MPI_Comm comm, const ds_delta_meta *meta, int n_done, const int *writer,
                    ds_delta_file **out)
{
    *out = NULL;
    ds_delta_file *f = file_new(path, comm, 0);
    char tmp[4200];
    ds_out_tmpname(path, tmp, sizeof tmp);
    int rc = ds_ctx_agree(&f->ctx, check_meta(path, meta));
    if (!rc) rc = ds_ctx_agree(&f->ctx, open_rw(tmp, comm, &f->file));
    if (!rc) rc = ds_ctx_agree(&f->ctx, check_staged(f, meta));
    if (!rc) {
        /* the job's metadata; the entries were just found equal */
        ds_delta_entry *entries = f->meta.entries;
        f->meta = *meta;
        f->meta.content_sha256[0] = 0;
        f->meta.entries = entries;
        memcpy(f->meta.entries, meta->entries, sizeof(ds_delta_entry) * (size_t)meta->n);
        f->written = ds_calloc((size_t)(meta->n ? meta->n : 1), 1);
        f->digests = ds_malloc(sizeof(ds_named_digest) * (size_t)(2 * meta->n + 1));
        int lrc = 0;
        for (int i = 0; i < n_done && i < meta->n && !lrc; i++)
            if (writer[i] == f->ctx.rank) lrc = redigest(f, i);
        rc = ds_ctx_agree(&f->ctx, lrc);
    }
    if (rc) {
        file_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* The recorded digests of every dataset (attribute "sha256"). */
static int read_recs(ds_delta_file *f)
{
    int n = f->meta.n;
    f->rec = ds_calloc((size_t)(3 * n + 1), sizeof(ds_digest));
    f->has_rec = ds_calloc((size_t)(3 * n + 1), 1);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            hid_t d = part_dset(f, i, k);
            if (d < 0 || !ds_h5_attr_exists(d, "sha256")) continue;
            char hex[80];
            int rc = ds_h5_attr_get_str(d, "sha256", hex, sizeof hex);
            if (rc) return rc;
            if (ds_digest_parse(hex, &f->rec[3 * i + k]) != 0)
                return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %s: attribute sha256 is not 64 lowercase hex digits",
                              f->path, f->meta.entries[i].t.name, part_names[k]);
            f->has_rec[3 * i + k] = 1;
        }
    return 0;
}

/* Read part k of entry i as stored (bytes: ds_tinfo_bytes of its info) and
 * digest it. */
static int read_part(ds_delta_file *f, int i, int k, void *buf, ds_digest *dg)
{
    ds_tinfo t;
    const ds_delta_entry *e = &f->meta.entries[i];
    ds_delta_entry_info(e, part_names[k], &t);
    hid_t type = k == 0 ? H5T_NATIVE_UINT64 : k == 1 ? H5T_NATIVE_FLOAT : ds_h5_type(t.dtype);
    int64_t rows = k == 0 ? e->rows : k == 1 ? e->n_scales : t.ndim ? t.shape[0] : 1;
    int rc = ds_h5_read_rows(part_dset(f, i, k), type, 0, rows, buf);
    if (!rc && dg) ds_entry_digest(&t, buf, dg);
    return rc;
}

static int part_mismatch(const ds_delta_file *f, int i, int k)
{
    return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %s data does not match its recorded sha256 (damaged or altered "
                  "file; --no-verify skips this check)", f->path, f->meta.entries[i].t.name, part_names[k]);
}

/* Read part k of entry i into buf, checked against its recorded digest. */
static int read_checked(ds_delta_file *f, int i, int k, void *buf)
{
    if (!ds_verify_enabled() || !f->has_rec[3 * i + k]) return read_part(f, i, k, buf, NULL);
    ds_digest d;
    int rc = read_part(f, i, k, buf, &d);
    if (!rc && memcmp(d.b, f->rec[3 * i + k].b, 32) != 0) rc = part_mismatch(f, i, k);
    return rc;
}

/* Collective, at open: a file without per-dataset digests is checked whole
 * against its content_sha256, each rank digesting every size-th entry. */
static int verify_legacy(ds_delta_file *f)
{
    int n = f->meta.n, all = 1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) all &= part_dset(f, i, k) < 0 || f->has_rec[3 * i + k];
    if (all || !ds_verify_enabled() || !f->meta.content_sha256[0]) return 0;
    ds_named_digest *dg = ds_malloc(sizeof *dg * (size_t)(2 * n + 1));
    int nd = 0, rc = 0;
    for (int i = f->ctx.rank; i < n && !rc; i += f->ctx.size)
        for (int k = 0; k < 3 && !rc; k++) {
            if (part_dset(f, i, k) < 0) continue;
            ds_tinfo t;
            ds_delta_entry_info(&f->meta.entries[i], part_names[k], &t);
            void *buf = ds_malloc(ds_tinfo_bytes(&t) + 1); /* files of the old format only */
            snprintf(dg[nd].name, sizeof dg[nd].name, "%s", t.name);
            rc = read_part(f, i, k, buf, &dg[nd++].digest);
            free(buf);
        }
    rc = ds_content_hash_verify(&f->ctx, f->path, rc, nd, dg, f->meta.content_sha256);
    free(dg);
    return rc;
}

int ds_delta_open(const char *path, MPI_Comm comm, ds_delta_file **out)
{
    *out = NULL;
    ds_delta_file *f = file_new(path, comm, 0);
    int rc = ds_ctx_agree(&f->ctx, ds_h5_open(path, comm, &f->file));
    if (!rc) rc = ds_ctx_agree(&f->ctx, read_structure(f));
    if (!rc) rc = ds_ctx_agree(&f->ctx, read_recs(f));
    if (!rc) rc = ds_ctx_agree(&f->ctx, verify_legacy(f));
    if (rc) {
        file_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

static int check_entry(ds_delta_file *f, int i, int coded, const char *what)
{
    if (i < 0 || i >= f->meta.n || f->meta.entries[i].coded != coded)
        return ds_err(DS_EXIT_FAIL, "%s: entry %d has no %s", f->path, i, what);
    return 0;
}

int ds_delta_read_signs(ds_delta_file *f, int i, uint64_t *bits)
{
    int rc = check_entry(f, i, 1, "signs");
    return rc ? rc : read_checked(f, i, 0, bits);
}

int ds_delta_read_scales(ds_delta_file *f, int i, float *scales)
{
    int rc = check_entry(f, i, 1, "scale");
    return rc ? rc : read_checked(f, i, 1, scales);
}

int ds_delta_read_dense(ds_delta_file *f, int i, ds_dtype want, void *buf)
{
    int rc = check_entry(f, i, 0, "dense delta");
    if (rc) return rc;
    const ds_tinfo *t = &f->meta.entries[i].t;
    if (want == t->dtype) return read_checked(f, i, 2, buf);
    if (!ds_verify_enabled() || !f->has_rec[3 * i + 2])
        return ds_h5_read_rows_conv(f->dense[i], t->dtype, want, 0, t->ndim ? t->shape[0] : 1, buf);
    size_t n = (size_t)ds_tinfo_numel(t);
    void *st = scratch(f, 0, ds_tinfo_bytes(t) + 1);
    rc = read_checked(f, i, 2, st);
    if (!rc && want == DS_DTYPE_F32) {
        ds_to_f32(t->dtype, st, buf, n);
    } else if (!rc && t->dtype == DS_DTYPE_F32) {
        ds_from_f32(want, st, buf, n);
    } else if (!rc) {
        float *tmp = scratch(f, 1, sizeof(float) * n + 1);
        ds_to_f32(t->dtype, st, tmp, n);
        ds_from_f32(want, tmp, buf, n);
    }
    return rc;
}

void ds_delta_close(ds_delta_file *f)
{
    if (f) file_free(f);
}

int ds_delta_is_delta(const char *path)
{
    if (!ds_h5_is_hdf5(path)) return 0;
    hid_t file;
    if (ds_h5_open_serial(path, &file) != 0) {
        ds_err_clear();
        return 0;
    }
    char fmt[DS_NAME_MAX] = "";
    int yes = ds_h5_attr_exists(file, "format") && ds_h5_attr_get_str(file, "format", fmt, sizeof fmt) == 0 &&
              strcmp(fmt, DS_DELTA_FORMAT) == 0;
    H5Fclose(file);
    ds_err_clear();
    return yes;
}

int ds_delta_same_layout(const char *p0, const ds_delta_meta *a, const char *p, const ds_delta_meta *b)
{
    int rc = ds_delta_check_config(p, &b->cfg, p0, &a->cfg);
    if (rc) return rc;
    for (int i = 0; i < a->n || i < b->n; i++) {
        if (i >= a->n) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: not in %s", p, b->entries[i].t.name, p0);
        if (i >= b->n || strcmp(a->entries[i].t.name, b->entries[i].t.name) != 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: missing (it is in %s)", p, a->entries[i].t.name, p0);
        const ds_delta_entry *x = &a->entries[i], *y = &b->entries[i];
        char s1[96], s2[96];
        if (x->coded != y->coded)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: coded %s, but %s in %s", p, y->t.name, y->coded ? "with 1 bit" : "dense",
                          x->coded ? "with 1 bit" : "dense", p0);
        if (!ds_tinfo_same_shape(&x->t, &y->t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s in %s", p, y->t.name, ds_shape_str(&y->t, s1, sizeof s1),
                          ds_shape_str(&x->t, s2, sizeof s2), p0);
        if (x->t.dtype != y->t.dtype)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype %s, but %s in %s", p, y->t.name, ds_dtype_name(y->t.dtype),
                          ds_dtype_name(x->t.dtype), p0);
        if (x->coded && x->mode != y->mode)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: scale mode %s, but %s in %s", p, y->t.name, ds_scale_kind_name(y->mode),
                          ds_scale_kind_name(x->mode), p0);
    }
    return 0;
}
