/* Row-range reads of delta files, their recomputed content hash, the
 * signature attributes and the trust check (io/h5_delta_rows.h). */
#include "config.h"
#include "io/h5_delta_rows.h"
#include <stdlib.h>
#include <string.h>
#include "io/h5.h"
#include "io/h5_delta.h"
#include "src/hash.h"

struct ds_delta_rows {
    char path[4096];
    hid_t file;
};

int ds_delta_rows_open(const char *path, ds_delta_rows **out)
{
    *out = NULL;
    hid_t f;
    int rc = ds_h5_open_serial(path, &f);
    if (rc) return rc;
    ds_delta_rows *r = ds_calloc(1, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->file = f;
    *out = r;
    return 0;
}

void ds_delta_rows_close(ds_delta_rows *r)
{
    if (!r) return;
    H5Fclose(r->file);
    free(r);
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
    return tag(r, e, rc);
}

int ds_delta_rows_dense(ds_delta_rows *r, const ds_delta_entry *e, int64_t row0, int64_t nrows, ds_dtype want,
                        void *buf)
{
    hid_t d;
    int rc = part_open(r, e, "", &d);
    if (!rc) {
        rc = ds_h5_read_rows_conv(d, e->t.dtype, want, row0, nrows, buf);
        H5Dclose(d);
    }
    return tag(r, e, rc);
}

int ds_delta_rows_content_hash(ds_delta_rows *r, int n, const ds_delta_entry *e, char hex[65])
{
    ds_named_digest *dg = ds_malloc(sizeof(ds_named_digest) * (size_t)(2 * n + 1));
    int nd = 0, rc = 0;
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
