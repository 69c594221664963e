/* Row-range reads of delta files, their recomputed content hash, the
 * signature attributes and the trust check (io/h5_delta_rows.h). */
#include "config.h"
#include "io/h5_delta_rows.h"
#include <stdlib.h>
#include <string.h>
#include "io/h5.h"
#include "io/h5_delta.h"
#include "src/hash.h"

/* Verification on read: each dataset ("part") is digested as its rows
 * stream in from row 0 in order; when the last row has come, the digest is
 * compared with the dataset's recorded "sha256" attribute, or, in a file
 * written before those (legacy), kept until every part has been digested
 * and then combined into the content hash and compared with content_sha256.
 * A read that does not continue where the last one stopped abandons the
 * part's digest (it restarts at the next read from row 0). */
typedef struct {
    char key[DS_NAME_MAX + 8]; /* "<tensor>/signs", "<tensor>/scale", "<tensor>/dense" */
    int has_rec, done;
    ds_digest rec, got;
    int64_t next;
    ds_sha256 *h;
} part_state;

/* A read recorded while digests are deferred (ds_delta_rows_defer). */
typedef struct {
    const ds_delta_entry *e;
    const char *part; /* "signs", "scale" or "dense" */
    int64_t row0, nrows;
    const void *data;
    size_t bytes;
    void *own; /* a copy of the stored values (freed once digested), or NULL */
} pending_read;

struct ds_delta_rows {
    char path[4096];
    hid_t file;
    int n_parts, n_done, legacy;
    int hashing; /* in ds_delta_rows_content_hash: its caller compares */
    part_state *ps; /* sorted by key; NULL: not verifying */
    char content[65];
    int defer, n_pend, cap_pend;
    pending_read *pend;
};

static int cmp_part(const void *a, const void *b) { return strcmp(((const part_state *)a)->key, ((const part_state *)b)->key); }

/* The parts of the file and their recorded digests (nothing when the
 * groups cannot be listed: the structure checks of ds_delta_open report). */
static int parts_init(ds_delta_rows *r)
{
    hid_t g[2] = {H5I_INVALID_HID, H5I_INVALID_HID};
    int nn[2] = {0, 0}, rc = 0;
    char **names[2] = {NULL, NULL};
    const char *grp[2] = {"bits", "dense"};
    for (int k = 0; k < 2; k++)
        if (!ds_h5_exists(r->file, grp[k]) || ds_h5_group_open(r->file, grp[k], &g[k]) ||
            ds_h5_group_list(g[k], &nn[k], &names[k])) {
            ds_err_clear();
            goto out;
        }
    r->ps = ds_calloc((size_t)(2 * nn[0] + nn[1] + 1), sizeof(part_state));
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nn[k]; i++)
            for (int p = 0; p < (k ? 1 : 2); p++)
                snprintf(r->ps[r->n_parts++].key, sizeof r->ps[0].key, "%s/%s", names[k][i],
                         k ? "dense" : p ? "scale" : "signs");
    qsort(r->ps, (size_t)r->n_parts, sizeof *r->ps, cmp_part);
    for (int i = 0; i < r->n_parts && !rc; i++) {
        part_state *s = &r->ps[i];
        char dn[DS_NAME_MAX + 32], hex[80];
        size_t l = strlen(s->key);
        int dense = l > 6 && strcmp(s->key + l - 6, "/dense") == 0;
        if (dense) snprintf(dn, sizeof dn, "dense/%.*s", (int)(l - 6), s->key);
        else snprintf(dn, sizeof dn, "bits/%s", s->key);
        hid_t d;
        if (ds_h5_dataset_open(r->file, dn, &d)) {
            ds_err_clear();
            continue;
        }
        if (ds_h5_attr_exists(d, "sha256")) {
            rc = ds_h5_attr_get_str(d, "sha256", hex, sizeof hex);
            if (!rc && ds_digest_parse(hex, &s->rec) != 0)
                rc = ds_err(DS_EXIT_INPUT, "%s: %s: attribute sha256 is not 64 lowercase hex digits", r->path, dn);
            s->has_rec = !rc;
        }
        H5Dclose(d);
        if (!s->has_rec) r->legacy = 1;
    }
    if (!rc && r->legacy && ds_h5_attr_exists(r->file, "content_sha256"))
        rc = ds_h5_attr_get_str(r->file, "content_sha256", r->content, sizeof r->content);
out:
    for (int k = 0; k < 2; k++) {
        ds_h5_names_free(nn[k], names[k]);
        if (g[k] >= 0) H5Gclose(g[k]);
    }
    return rc;
}

int ds_delta_rows_open(const char *path, ds_delta_rows **out)
{
    *out = NULL;
    hid_t f;
    int rc = ds_h5_open_serial(path, &f);
    if (rc) return rc;
    ds_delta_rows *r = ds_calloc(1, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->file = f;
    if (ds_verify_enabled() && (rc = parts_init(r))) {
        ds_delta_rows_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void ds_delta_rows_close(ds_delta_rows *r)
{
    if (!r) return;
    H5Fclose(r->file);
    for (int i = 0; i < r->n_parts; i++)
        if (r->ps[i].h) {
            ds_digest d;
            ds_sha256_final(r->ps[i].h, &d);
        }
    for (int i = 0; i < r->n_pend; i++) free(r->pend[i].own);
    free(r->pend);
    free(r->ps);
    free(r);
}

/* Every part digested in a legacy file: their content hash against content_sha256. */
static int legacy_check(ds_delta_rows *r)
{
    ds_sha256 *h = ds_sha256_new();
    for (int i = 0; i < r->n_parts; i++) ds_sha256_update(h, r->ps[i].got.b, 32);
    ds_digest d, want;
    ds_sha256_final(h, &d);
    if (ds_digest_parse(r->content, &want) != 0 || memcmp(d.b, want.b, 32) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: the tensors do not match the recorded content_sha256 (damaged or altered "
                      "file; --no-verify skips this check)", r->path);
    return 0;
}

/* Rows [row0, row0 + nrows) of part of e, as stored (bytes of them at data),
 * have been read: digest them (see part_state). */
static int digest_now(ds_delta_rows *r, const ds_delta_entry *e, const char *part, int64_t row0, int64_t nrows,
                      const void *data, size_t bytes)
{
    part_state key, *s;
    snprintf(key.key, sizeof key.key, "%s/%s", e->t.name, part);
    if (!(s = bsearch(&key, r->ps, (size_t)r->n_parts, sizeof *r->ps, cmp_part))) return 0;
    ds_tinfo t;
    ds_delta_entry_info(e, part, &t);
    int64_t total = strcmp(part, "signs") == 0 ? e->rows : strcmp(part, "scale") == 0 ? e->n_scales : ds_delta_nrows(e);
    ds_digest d;
    if (row0 == 0 && s->h) ds_sha256_final(s->h, &d), s->h = NULL;
    if (row0 == 0) s->h = ds_entry_digest_begin(&t), s->next = 0;
    if (!s->h) return 0;
    if (row0 != s->next) {
        ds_sha256_final(s->h, &d);
        s->h = NULL;
        return 0;
    }
    ds_sha256_update(s->h, data, bytes);
    s->next += nrows;
    if (s->next < total) return 0;
    ds_sha256_final(s->h, &s->got);
    s->h = NULL;
    if (s->has_rec && memcmp(s->got.b, s->rec.b, 32) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %s data does not match its recorded sha256 (damaged or altered "
                      "file; --no-verify skips this check)", r->path, e->t.name, part);
    if (!s->done) {
        s->done = 1;
        if (++r->n_done == r->n_parts && r->legacy && r->content[0]) return legacy_check(r);
    }
    return 0;
}

/* Whether reads of r are digested (now or deferred). */
static int verifying(const ds_delta_rows *r) { return r->ps && !r->hashing && ds_verify_enabled(); }

/* Digest a read now, or record it while deferred (own: a malloc'd copy the
 * record takes, or NULL when data stays valid as the caller promised). */
static int feed_own(ds_delta_rows *r, const ds_delta_entry *e, const char *part, int64_t row0, int64_t nrows,
                    const void *data, size_t bytes, void *own)
{
    if (!verifying(r)) return 0;
    if (!r->defer) {
        if (r->n_pend) ds_die("%s: a read while %d deferred digests are pending", r->path, r->n_pend);
        return digest_now(r, e, part, row0, nrows, data, bytes);
    }
    if (r->n_pend == r->cap_pend) {
        r->cap_pend = r->cap_pend ? 2 * r->cap_pend : 16;
        r->pend = ds_realloc(r->pend, (size_t)r->cap_pend * sizeof *r->pend);
    }
    r->pend[r->n_pend++] = (pending_read){e, part, row0, nrows, data, bytes, own};
    return 0;
}

static int feed(ds_delta_rows *r, const ds_delta_entry *e, const char *part, int64_t row0, int64_t nrows,
                const void *data, size_t bytes)
{
    return feed_own(r, e, part, row0, nrows, data, bytes, NULL);
}

void ds_delta_rows_defer(ds_delta_rows *r, int on) { r->defer = on; }

int ds_delta_rows_digest(ds_delta_rows *r)
{
    int rc = 0;
    for (int i = 0; i < r->n_pend; i++) {
        pending_read *p = &r->pend[i];
        if (!rc) rc = digest_now(r, p->e, p->part, p->row0, p->nrows, p->data, p->bytes);
        free(p->own);
    }
    r->n_pend = 0;
    return rc; /* digest_now's message names the file and tensor */
}

int64_t ds_delta_row_elems(const ds_tinfo *t)
{
    int64_t n = 1;
    for (int i = 1; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t ds_delta_nrows(const ds_delta_entry *e) { return e->coded ? e->rows : e->t.ndim ? e->t.shape[0] : 1; }

/* Open the dataset of part ("signs", "scale" or "" for the dense delta). */
static int part_open(ds_delta_rows *r, const ds_delta_entry *e, const char *part, hid_t *d)
{
    char name[DS_NAME_MAX + 32];
    if (*part) snprintf(name, sizeof name, "bits/%s/%s", e->t.name, part);
    else snprintf(name, sizeof name, "dense/%s", e->t.name);
    return ds_h5_dataset_open(r->file, name, d);
}

/* Prefix errors with the file and tensor so that the job's message names both. */
static int tag(ds_delta_rows *r, const ds_delta_entry *e, int rc)
{
    if (!rc || strstr(ds_errmsg(), r->path)) return rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ds_errmsg());
    return ds_err(rc, "%s: tensor %s: %s", r->path, e->t.name, msg);
}

int ds_delta_rows_signs(ds_delta_rows *r, const ds_delta_entry *e, int64_t row0, int64_t nrows, uint64_t *bits)
{
    hid_t d;
    int rc = part_open(r, e, "signs", &d);
    if (!rc) {
        rc = ds_h5_read_rows(d, H5T_NATIVE_UINT64, row0, nrows, bits);
        H5Dclose(d);
    }
    if (!rc) rc = feed(r, e, "signs", row0, nrows, bits, (size_t)nrows * (size_t)e->words_per_row * 8);
    return tag(r, e, rc);
}

int ds_delta_rows_scales(ds_delta_rows *r, const ds_delta_entry *e, int64_t i0, int64_t n, float *s)
{
    hid_t d;
    int rc = part_open(r, e, "scale", &d);
    if (!rc) {
        rc = ds_h5_read_rows(d, H5T_NATIVE_FLOAT, i0, n, s);
        H5Dclose(d);
    }
    if (!rc) rc = feed(r, e, "scale", i0, n, s, (size_t)n * sizeof(float));
    return tag(r, e, rc);
}

int ds_delta_rows_dense(ds_delta_rows *r, const ds_delta_entry *e, int64_t row0, int64_t nrows, ds_dtype want,
                        void *buf)
{
    hid_t d;
    int rc = part_open(r, e, "", &d);
    if (rc) return tag(r, e, rc);
    size_t n = (size_t)nrows * (size_t)ds_delta_row_elems(&e->t), es = ds_dtype_size(e->t.dtype);
    if (!verifying(r)) {
        rc = ds_h5_read_rows_conv(d, e->t.dtype, want, row0, nrows, buf);
    } else if (want == e->t.dtype) {
        rc = ds_h5_read_rows(d, ds_h5_type(e->t.dtype), row0, nrows, buf);
        if (!rc) rc = feed(r, e, "dense", row0, nrows, buf, n * es);
    } else {
        /* digest the stored values, then convert as io/h5.c does (deferred:
         * the record keeps the stored values) */
        void *st = ds_malloc(n * es + 1);
        rc = ds_h5_read_rows(d, ds_h5_type(e->t.dtype), row0, nrows, st);
        void *given = NULL; /* st, when a deferred record took it */
        if (!rc) rc = feed_own(r, e, "dense", row0, nrows, st, n * es, r->defer ? (given = st) : NULL);
        if (!rc && want == DS_DTYPE_F32) {
            ds_to_f32(e->t.dtype, st, buf, n);
        } else if (!rc && e->t.dtype == DS_DTYPE_F32) {
            ds_from_f32(want, st, buf, n);
        } else if (!rc) {
            float *tmp = ds_malloc(sizeof(float) * n + 1);
            ds_to_f32(e->t.dtype, st, tmp, n);
            ds_from_f32(want, tmp, buf, n);
            free(tmp);
        }
        if (!given) free(st);
    }
    H5Dclose(d);
    return tag(r, e, rc);
}

int ds_delta_rows_content_hash(ds_delta_rows *r, int n, const ds_delta_entry *e, char hex[65])
{
    ds_named_digest *dg = ds_malloc(sizeof(ds_named_digest) * (size_t)(2 * n + 1));
    int nd = 0, rc = 0;
    r->hashing = 1; /* the caller compares the hash: no check on read here */
    for (int i = 0; i < n && !rc; i++) {
        const char *parts[2] = {e[i].coded ? "signs" : "dense", e[i].coded ? "scale" : NULL};
        for (int p = 0; p < 2 && parts[p] && !rc; p++) {
            ds_tinfo t;
            ds_delta_entry_info(&e[i], parts[p], &t);
            void *buf = ds_malloc(ds_tinfo_bytes(&t) ? ds_tinfo_bytes(&t) : 1);
            if (!e[i].coded) rc = ds_delta_rows_dense(r, &e[i], 0, ds_delta_nrows(&e[i]), e[i].t.dtype, buf);
            else if (p == 0) rc = ds_delta_rows_signs(r, &e[i], 0, e[i].rows, buf);
            else rc = ds_delta_rows_scales(r, &e[i], 0, e[i].n_scales, buf);
            if (!rc) {
                snprintf(dg[nd].name, sizeof dg[nd].name, "%s", t.name);
                ds_entry_digest(&t, buf, &dg[nd].digest);
                nd++;
            }
            free(buf);
        }
    }
    if (!rc) {
        /* One rank's own hash: the content hash over a communicator of one. */
        ds_ctx self = {.comm = MPI_COMM_SELF, .rank = 0, .size = 1, .quiet = 1, .job = "io"};
        ds_digest d;
        rc = ds_content_hash(&self, nd, dg, &d);
        ds_digest_hex(&d, hex);
    }
    r->hashing = 0;
    free(dg);
    return rc;
}

int ds_delta_sig_read(const char *path, char sig[129], char pk[65], int *present)
{
    hid_t f;
    *present = 0;
    sig[0] = pk[0] = 0;
    int rc = ds_h5_open_serial(path, &f);
    if (rc) return rc;
    if (ds_h5_attr_exists(f, "signature")) {
        *present = 1;
        rc = ds_h5_attr_get_str(f, "signature", sig, 129);
        if (!rc) rc = ds_h5_attr_get_str(f, "signer_public_key", pk, 65);
    }
    H5Fclose(f);
    return rc;
}

int ds_delta_rows_trust(const char *path, const ds_sign_claim *c, int n, const ds_delta_entry *e,
                        const ds_trusted_key *keys, int nkeys, char *reason, size_t rn)
{
    char sig_hex[129], pk_hex[65];
    int present;
    reason[0] = 0;
    int rc = ds_delta_sig_read(path, sig_hex, pk_hex, &present);
    if (rc) return rc;
    ds_sign_judge(keys, nkeys, present ? sig_hex : NULL, pk_hex, c, reason, rn);
    if (reason[0]) return 0;
    ds_delta_rows *r;
    char hex[65];
    rc = ds_delta_rows_open(path, &r);
    if (!rc) rc = ds_delta_rows_content_hash(r, n, e, hex);
    ds_delta_rows_close(r);
    if (!rc && strcmp(hex, c->content_sha256) != 0)
        snprintf(reason, rn, "data changed after signing (content hash %.16s... != signed %.16s...)", hex, c->content_sha256);
    return rc;
}

int ds_h5_open_rw_serial(const char *path, hid_t *file)
{
    ds_h5_quiet();
    *file = ds_h5_is_hdf5(path) ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT) : H5I_INVALID_HID;
    if (*file < 0) {
        char detail[512];
        ds_h5_errdetail(detail, sizeof detail);
        return ds_err(DS_EXIT_OUTPUT, "%s: cannot open for writing: %s", path, detail[0] ? detail : "not an HDF5 file");
    }
    return 0;
}

int ds_h5_write_strings(hid_t loc, const char *name, size_t n, const char *const *s)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(s[i]) + 1 > len) len = strlen(s[i]) + 1;
    char *buf = ds_calloc(n ? n : 1, len);
    for (size_t i = 0; i < n; i++) memcpy(buf + i * len, s[i], strlen(s[i]));
    hid_t type = H5Tcopy(H5T_C_S1), d;
    H5Tset_size(type, len);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    H5Tset_cset(type, H5T_CSET_UTF8);
    int64_t shape = (int64_t)n;
    int rc = ds_h5_dataset_create(loc, name, type, 1, &shape, &d);
    if (!rc) {
        if (n) rc = ds_h5_write_rows(d, type, 0, (int64_t)n, buf);
        H5Dclose(d);
    }
    H5Tclose(type);
    free(buf);
    return rc;
}

int ds_h5_write_doubles(hid_t loc, const char *name, size_t n, const double *v)
{
    hid_t d;
    int64_t shape = (int64_t)n;
    int rc = ds_h5_dataset_create(loc, name, ds_h5_type(DS_DTYPE_F64), 1, &shape, &d);
    if (!rc) {
        if (n) rc = ds_h5_write_rows(d, H5T_NATIVE_DOUBLE, 0, (int64_t)n, v);
        H5Dclose(d);
    }
    return rc;
}
