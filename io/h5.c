/* Generic parallel-HDF5 helpers (io/h5.h). */
#include "config.h"
#include "io/h5.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void ds_h5_quiet(void)
{
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

typedef struct {
    char *buf;
    size_t n;
} errwalk;

/* Walking downward, the last entry is the innermost (most specific) one. */
static herr_t errwalk_cb(unsigned n, const H5E_error2_t *e, void *arg)
{
    errwalk *w = arg;
    if (e->desc && e->desc[0]) snprintf(w->buf, w->n, "%s", e->desc);
    return 0;
}

char *ds_h5_errdetail(char *buf, size_t n)
{
    errwalk w = {buf, n};
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, errwalk_cb, &w);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return buf;
}

int ds_h5_is_hdf5(const char *path)
{
    ds_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    return H5Fis_hdf5(path) > 0;
}

char *ds_h5_where(hid_t obj, char *buf, size_t n)
{
    char file[2048] = "?", name[1024] = "";
    if (H5Fget_name(obj, file, sizeof file) < 0) snprintf(file, sizeof file, "?");
    if (H5Iget_name(obj, name, sizeof name) < 0) name[0] = 0;
    if (name[0] && strcmp(name, "/") != 0) snprintf(buf, n, "%s: %s", file, name);
    else snprintf(buf, n, "%s", file);
    return buf;
}

/* ds_err with "WHERE: " in front and HDF5's reason at the end. */
static int h5_fail(int code, hid_t obj, const char *what)
{
    char where[3200], detail[512];
    ds_h5_errdetail(detail, sizeof detail);
    ds_h5_where(obj, where, sizeof where);
    if (detail[0]) return ds_err(code, "%s: %s: %s", where, what, detail);
    return ds_err(code, "%s: %s", where, what);
}

static hid_t fapl_mpio(MPI_Comm comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    /* Rank 0 writes metadata for all: fewer small writes at close. */
    H5Pset_coll_metadata_write(fapl, 1);
    return fapl;
}

/* Why a create failed, in the system's words where it can tell (MPI-IO
 * says "MPI_ERR_OTHER: known error not in list" for a read-only folder):
 * the folder missing or not writable, or the file there not writable. */
static void create_reason(const char *path, char *detail, size_t n)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) snprintf(detail, n, "%.300s: %s", dir, strerror(errno));
    else if (access(path, F_OK) == 0 && access(path, W_OK) != 0) snprintf(detail, n, "%s", strerror(errno));
}

int ds_h5_create(const char *path, MPI_Comm comm, hid_t *file)
{
    ds_h5_quiet();
    hid_t fapl = fapl_mpio(comm);
    *file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int rc = 0;
    if (*file < 0) {
        char detail[512];
        ds_h5_errdetail(detail, sizeof detail);
        create_reason(path, detail, sizeof detail);
        rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot create HDF5 file: %s", path, detail);
    }
    H5Pclose(fapl);
    return rc;
}

/* The reason a file cannot be opened as HDF5, as one error. */
static int open_fail(const char *path)
{
    char detail[512];
    ds_h5_errdetail(detail, sizeof detail);
    struct stat st;
    if (stat(path, &st) != 0) return ds_err(DS_EXIT_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ds_err(DS_EXIT_INPUT, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0) return ds_err(DS_EXIT_INPUT, "%s: not an HDF5 file", path);
    return ds_err(DS_EXIT_INPUT, "%s: corrupt or truncated HDF5 file (%s)", path, detail);
}

int ds_h5_open(const char *path, MPI_Comm comm, hid_t *file)
{
    ds_h5_quiet();
    if (!ds_h5_is_hdf5(path)) {
        *file = H5I_INVALID_HID;
        return open_fail(path);
    }
    hid_t fapl = fapl_mpio(comm);
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    /* Before H5Pclose: any API call clears the error stack. */
    int rc = *file < 0 ? open_fail(path) : 0;
    H5Pclose(fapl);
    return rc;
}

int ds_h5_open_serial(const char *path, hid_t *file)
{
    ds_h5_quiet();
    *file = ds_h5_is_hdf5(path) ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : H5I_INVALID_HID;
    return *file < 0 ? open_fail(path) : 0;
}

int ds_h5_close(hid_t file)
{
    char name[2048] = "?";
    H5Fget_name(file, name, sizeof name);
    if (H5Fclose(file) < 0) {
        char detail[512];
        ds_h5_errdetail(detail, sizeof detail);
        return ds_err(DS_EXIT_OUTPUT, "%s: closing the HDF5 file failed: %s", name, detail);
    }
    return 0;
}

/* ---- attributes */
int ds_h5_attr_exists(hid_t obj, const char *name)
{
    ds_h5_quiet();
    return H5Aexists(obj, name) > 0;
}

static int attr_write(hid_t obj, const char *name, hid_t type, const void *value)
{
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return h5_fail(DS_EXIT_OUTPUT, obj, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, type, value);
    int rc = 0;
    if (st < 0) { /* report before closing: any API call clears the error stack */
        char what[300];
        snprintf(what, sizeof what, "cannot write attribute %s", name);
        rc = h5_fail(DS_EXIT_OUTPUT, obj, what);
    }
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

int ds_h5_attr_set_str(hid_t obj, const char *name, const char *value)
{
    ds_h5_quiet();
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(obj, name, t, value);
    H5Tclose(t);
    return rc;
}

int ds_h5_attr_set_int(hid_t obj, const char *name, int64_t value)
{
    ds_h5_quiet();
    return attr_write(obj, name, H5T_STD_I64LE, &value);
}

int ds_h5_attr_set_double(hid_t obj, const char *name, double value)
{
    ds_h5_quiet();
    return attr_write(obj, name, H5T_IEEE_F64LE, &value);
}

double ds_h5_float_decimal(float value)
{
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)value);
        double d = strtod(buf, NULL);
        if ((float)d == value) return d;
    }
    return value; /* NaN */
}

int ds_h5_attr_set_float(hid_t obj, const char *name, float value)
{
    return ds_h5_attr_set_double(obj, name, ds_h5_float_decimal(value));
}

/* Open a one-value attribute; on error *a < 0 and ds_err set. */
static int attr_open(hid_t obj, const char *name, hid_t *a, H5T_class_t *cls)
{
    ds_h5_quiet();
    char where[3200];
    *a = H5I_INVALID_HID;
    if (H5Aexists(obj, name) <= 0)
        return ds_err(DS_EXIT_INPUT, "%s: missing attribute %s", ds_h5_where(obj, where, sizeof where), name);
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) return h5_fail(DS_EXIT_INPUT, obj, name);
    hid_t space = H5Aget_space(*a), type = H5Aget_type(*a);
    hssize_t np = H5Sget_simple_extent_npoints(space);
    *cls = H5Tget_class(type);
    H5Sclose(space);
    H5Tclose(type);
    if (np != 1) {
        H5Aclose(*a);
        *a = H5I_INVALID_HID;
        return ds_err(DS_EXIT_INPUT, "%s: attribute %s holds %lld values, expected one",
                      ds_h5_where(obj, where, sizeof where), name, (long long)np);
    }
    return 0;
}

static int attr_wrong_type(hid_t obj, hid_t a, const char *name, const char *want)
{
    char where[3200];
    H5Aclose(a);
    return ds_err(DS_EXIT_INPUT, "%s: attribute %s is not %s", ds_h5_where(obj, where, sizeof where), name, want);
}

int ds_h5_attr_get_str(hid_t obj, const char *name, char *buf, size_t n)
{
    hid_t a;
    H5T_class_t cls;
    int rc = attr_open(obj, name, &a, &cls);
    if (rc) return rc;
    if (cls != H5T_STRING) return attr_wrong_type(obj, a, name, "a string");
    hid_t ft = H5Aget_type(a);
    int vlen = H5Tis_variable_str(ft) > 0;
    size_t fsize = H5Tget_size(ft);
    H5T_cset_t cset = H5Tget_cset(ft);
    H5Tclose(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, cset); /* HDF5 does not convert between ASCII and UTF-8 */
    herr_t st;
    size_t len = 0;
    if (vlen) {
        H5Tset_size(mt, H5T_VARIABLE);
        char *s = NULL;
        st = H5Aread(a, mt, &s);
        if (st >= 0 && s) {
            len = strlen(s);
            snprintf(buf, n, "%s", s);
        } else if (st >= 0) {
            buf[0] = 0;
        }
        if (st < 0) rc = h5_fail(DS_EXIT_INPUT, obj, name);
        if (s) H5free_memory(s);
    } else {
        char *tmp = ds_calloc(fsize + 1, 1);
        H5Tset_size(mt, fsize + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        st = H5Aread(a, mt, tmp);
        if (st < 0) rc = h5_fail(DS_EXIT_INPUT, obj, name);
        len = strlen(tmp);
        snprintf(buf, n, "%s", tmp);
        free(tmp);
    }
    H5Tclose(mt);
    H5Aclose(a);
    if (rc) return rc;
    if (len >= n) {
        char where[3200];
        return ds_err(DS_EXIT_INPUT, "%s: attribute %s is too long (%zu bytes)", ds_h5_where(obj, where, sizeof where),
                      name, len);
    }
    return 0;
}

int ds_h5_attr_get_int(hid_t obj, const char *name, int64_t *value)
{
    hid_t a;
    H5T_class_t cls;
    int rc = attr_open(obj, name, &a, &cls);
    if (rc) return rc;
    if (cls != H5T_INTEGER) return attr_wrong_type(obj, a, name, "an integer");
    rc = H5Aread(a, H5T_NATIVE_INT64, value) < 0 ? h5_fail(DS_EXIT_INPUT, obj, name) : 0;
    H5Aclose(a);
    return rc;
}

int ds_h5_attr_get_double(hid_t obj, const char *name, double *value)
{
    hid_t a;
    H5T_class_t cls;
    int rc = attr_open(obj, name, &a, &cls);
    if (rc) return rc;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) return attr_wrong_type(obj, a, name, "a number");
    rc = H5Aread(a, H5T_NATIVE_DOUBLE, value) < 0 ? h5_fail(DS_EXIT_INPUT, obj, name) : 0;
    H5Aclose(a);
    return rc;
}

/* ---- types */
static hid_t half_type(int epos, int esize, int msize, size_t ebias)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    /* Fields first (they must fit the current 32-bit precision), then shrink. */
    if (H5Tset_fields(t, 15, (size_t)epos, (size_t)esize, 0, (size_t)msize) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, ebias) < 0)
        ds_die("cannot build the HDF5 16-bit float type");
    return t;
}

hid_t ds_h5_type(ds_dtype t)
{
    static hid_t f16 = H5I_INVALID_HID, bf16 = H5I_INVALID_HID;
    ds_h5_quiet();
    switch (t) {
    case DS_DTYPE_F32: return H5T_IEEE_F32LE;
    case DS_DTYPE_F64: return H5T_IEEE_F64LE;
    case DS_DTYPE_F16:
        if (f16 < 0) f16 = half_type(10, 5, 10, 15);
        return f16;
    case DS_DTYPE_BF16:
        if (bf16 < 0) bf16 = half_type(7, 8, 7, 127);
        return bf16;
    case DS_DTYPE_U64: return H5T_STD_U64LE;
    case DS_DTYPE_I32: return H5T_STD_I32LE;
    case DS_DTYPE_U8: return H5T_STD_U8LE;
    default: ds_die("ds_h5_type: unknown dtype %d", (int)t);
    }
}

int ds_h5_dtype_of(hid_t dset, ds_dtype *out)
{
    hid_t t = H5Dget_type(dset);
    if (t < 0) return -1;
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    int rc = -1;
    if (cls == H5T_FLOAT) {
        size_t spos, epos, esize, mpos, msize;
        H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
        size_t ebias = H5Tget_ebias(t);
        struct { ds_dtype d; size_t size, spos, epos, esize, msize, ebias; } known[] = {
            {DS_DTYPE_F32, 4, 31, 23, 8, 23, 127}, {DS_DTYPE_F64, 8, 63, 52, 11, 52, 1023},
            {DS_DTYPE_F16, 2, 15, 10, 5, 10, 15},  {DS_DTYPE_BF16, 2, 15, 7, 8, 7, 127},
        };
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (size == known[i].size && spos == known[i].spos && epos == known[i].epos && esize == known[i].esize &&
                mpos == 0 && msize == known[i].msize && ebias == known[i].ebias) {
                *out = known[i].d;
                rc = 0;
            }
    } else if (cls == H5T_INTEGER) {
        H5T_sign_t sg = H5Tget_sign(t);
        if (size == 8 && sg == H5T_SGN_NONE) *out = DS_DTYPE_U64, rc = 0;
        else if (size == 4 && sg == H5T_SGN_2) *out = DS_DTYPE_I32, rc = 0;
        else if (size == 1 && sg == H5T_SGN_NONE) *out = DS_DTYPE_U8, rc = 0;
    }
    H5Tclose(t);
    return rc;
}

/* ---- groups and datasets */
int ds_h5_group_create(hid_t loc, const char *name, hid_t *grp)
{
    ds_h5_quiet();
    *grp = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    return *grp < 0 ? h5_fail(DS_EXIT_OUTPUT, loc, "cannot create group") : 0;
}

int ds_h5_group_open(hid_t loc, const char *name, hid_t *grp)
{
    ds_h5_quiet();
    char where[3200];
    if (!ds_h5_exists(loc, name))
        return ds_err(DS_EXIT_INPUT, "%s: missing group %s", ds_h5_where(loc, where, sizeof where), name);
    *grp = H5Gopen2(loc, name, H5P_DEFAULT);
    return *grp < 0 ? h5_fail(DS_EXIT_INPUT, loc, "cannot open group") : 0;
}

int ds_h5_exists(hid_t loc, const char *name)
{
    ds_h5_quiet();
    return H5Lexists(loc, name, H5P_DEFAULT) > 0;
}

typedef struct {
    int n, cap;
    char **names;
} namelist;

/* HDF5 1.12 renamed the link-iteration API; 1.10 is the oldest supported. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define link_iterate H5Literate2
#else
typedef H5L_info_t link_info;
#define link_iterate H5Literate
#endif

static herr_t list_cb(hid_t g, const char *name, const link_info *info, void *arg)
{
    namelist *l = arg;
    if (l->n == l->cap) l->names = ds_realloc(l->names, sizeof(char *) * (size_t)(l->cap = l->cap ? 2 * l->cap : 64));
    l->names[l->n++] = ds_strdup(name);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ds_h5_group_list(hid_t grp, int *n, char ***names)
{
    ds_h5_quiet();
    namelist l = {0, 0, NULL};
    if (link_iterate(grp, H5_INDEX_NAME, H5_ITER_INC, NULL, list_cb, &l) < 0) {
        ds_h5_names_free(l.n, l.names);
        return h5_fail(DS_EXIT_INPUT, grp, "cannot list the group");
    }
    if (l.n > 1) /* an empty group lists no names (qsort of NULL is undefined) */
        qsort(l.names, (size_t)l.n, sizeof(char *), cmp_str);
    *n = l.n;
    *names = l.names;
    return 0;
}

void ds_h5_names_free(int n, char **names)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int ds_h5_dataset_create(hid_t loc, const char *name, hid_t type, int ndim, const int64_t *shape, hid_t *dset)
{
    ds_h5_quiet();
    hsize_t dims[DS_MAX_DIMS];
    if (ndim < 0 || ndim > DS_MAX_DIMS) ds_die("ds_h5_dataset_create: %s: ndim %d", name, ndim);
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* Contiguous, allocated now (parallel HDF5 needs it), never filled:
     * every byte is written by its owner. */
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    *dset = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = 0;
    if (*dset < 0) {
        char what[DS_NAME_MAX + 64];
        snprintf(what, sizeof what, "cannot create dataset %s", name);
        rc = h5_fail(DS_EXIT_OUTPUT, loc, what);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    return rc;
}

int ds_h5_dataset_open(hid_t loc, const char *name, hid_t *dset)
{
    ds_h5_quiet();
    char where[3200];
    if (!ds_h5_exists(loc, name))
        return ds_err(DS_EXIT_INPUT, "%s: missing dataset %s", ds_h5_where(loc, where, sizeof where), name);
    *dset = H5Dopen2(loc, name, H5P_DEFAULT);
    if (*dset < 0) {
        char what[DS_NAME_MAX + 64];
        snprintf(what, sizeof what, "cannot open dataset %s", name);
        return h5_fail(DS_EXIT_INPUT, loc, what);
    }
    return 0;
}

int ds_h5_dataset_shape(hid_t dset, int *ndim, int64_t shape[DS_MAX_DIMS])
{
    hid_t space = H5Dget_space(dset);
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (nd < 0 || nd > DS_MAX_DIMS) {
        if (space >= 0) H5Sclose(space);
        char where[3200];
        return ds_err(DS_EXIT_INPUT, "%s: unsupported dataspace (%d dimensions)", ds_h5_where(dset, where, sizeof where),
                      nd);
    }
    hsize_t dims[DS_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        /* (n <= DS_MAX_NUMEL / d: the product stays in range, no overflow) */
        if (dims[i] > (hsize_t)DS_MAX_NUMEL || (dims[i] && n > DS_MAX_NUMEL / (int64_t)dims[i])) {
            char where[3200];
            return ds_err(DS_EXIT_INPUT, "%s: dataspace of more than 2^40 elements (dimension %d is %llu): damaged "
                          "file", ds_h5_where(dset, where, sizeof where), i, (unsigned long long)dims[i]);
        }
        n *= (int64_t)dims[i];
        shape[i] = (int64_t)dims[i];
    }
    *ndim = nd;
    return 0;
}

/* Shared by read and write: select rows piece by piece and call H5Dread/H5Dwrite. */
static int rows_io(hid_t dset, hid_t memtype, int64_t row0, int64_t nrows, void *buf, int write)
{
    ds_h5_quiet();
    char where[3200];
    hid_t fspace = H5Dget_space(dset);
    int nd = H5Sget_simple_extent_ndims(fspace);
    hsize_t dims[DS_MAX_DIMS] = {1};
    if (nd < 0 || nd > DS_MAX_DIMS) {
        H5Sclose(fspace);
        return ds_err(DS_EXIT_INPUT, "%s: unsupported dataspace", ds_h5_where(dset, where, sizeof where));
    }
    if (nd > 0) H5Sget_simple_extent_dims(fspace, dims, NULL);
    if (row0 < 0 || nrows < 0 || (hsize_t)(row0 + nrows) > dims[0]) {
        H5Sclose(fspace);
        return ds_err(DS_EXIT_FAIL, "%s: rows [%lld, %lld) out of range (%llu rows)",
                      ds_h5_where(dset, where, sizeof where), (long long)row0, (long long)(row0 + nrows),
                      (unsigned long long)dims[0]);
    }
    hid_t ft = H5Dget_type(dset);
    size_t esize = H5Tget_size(ft) > H5Tget_size(memtype) ? H5Tget_size(ft) : H5Tget_size(memtype);
    H5Tclose(ft);
    hsize_t row_elems = 1;
    for (int i = 1; i < nd; i++) row_elems *= dims[i];
    /* MPI-IO counts are int: at most 1 GiB per call. */
    hsize_t row_bytes = row_elems * esize;
    int64_t per = row_bytes ? (int64_t)(((hsize_t)1 << 30) / row_bytes) : 1;
    if (per < 1) per = 1;
    size_t mrow_bytes = (size_t)row_elems * H5Tget_size(memtype);
    int rc = 0;
    for (int64_t done = 0; done < nrows && !rc; done += per) {
        int64_t k = nrows - done < per ? nrows - done : per;
        hid_t mspace;
        if (nd == 0) {
            mspace = H5Screate(H5S_SCALAR);
            H5Sselect_all(fspace);
        } else {
            hsize_t start[DS_MAX_DIMS] = {0}, count[DS_MAX_DIMS];
            for (int i = 0; i < nd; i++) count[i] = dims[i];
            start[0] = (hsize_t)(row0 + done);
            count[0] = (hsize_t)k;
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
            mspace = H5Screate_simple(nd, count, NULL);
        }
        char *p = (char *)buf + (size_t)done * mrow_bytes;
        herr_t st = write ? H5Dwrite(dset, memtype, mspace, fspace, H5P_DEFAULT, p)
                          : H5Dread(dset, memtype, mspace, fspace, H5P_DEFAULT, p);
        if (st < 0) rc = h5_fail(write ? DS_EXIT_OUTPUT : DS_EXIT_INPUT, dset, write ? "write failed" : "read failed");
        H5Sclose(mspace);
    }
    H5Sclose(fspace);
    return rc;
}

int ds_h5_write_rows(hid_t dset, hid_t memtype, int64_t row0, int64_t nrows, const void *buf)
{
    return rows_io(dset, memtype, row0, nrows, (void *)buf, 1);
}

int ds_h5_read_rows(hid_t dset, hid_t memtype, int64_t row0, int64_t nrows, void *buf)
{
    return rows_io(dset, memtype, row0, nrows, buf, 0);
}

static int is_float(ds_dtype t)
{
    return t == DS_DTYPE_F32 || t == DS_DTYPE_F16 || t == DS_DTYPE_BF16 || t == DS_DTYPE_F64;
}

/* Elements per row of a dataset (1 for 0-D and 1-D). */
static int64_t row_elems(hid_t dset)
{
    int nd;
    int64_t shape[DS_MAX_DIMS], n = 1;
    if (ds_h5_dataset_shape(dset, &nd, shape)) return -1;
    for (int i = 1; i < nd; i++) n *= shape[i];
    return n;
}

/* Convert n values from dtype a to dtype b through float32. */
static void conv(ds_dtype a, const void *src, ds_dtype b, void *dst, float *tmp, size_t n)
{
    if (a == DS_DTYPE_F32) {
        ds_from_f32(b, src, dst, n);
    } else if (b == DS_DTYPE_F32) {
        ds_to_f32(a, src, dst, n);
    } else {
        ds_to_f32(a, src, tmp, n);
        ds_from_f32(b, tmp, dst, n);
    }
}

void *ds_buf_alloc(size_t n)
{
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return ds_malloc(n ? n : 1);
    size_t m = (n + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, m) != 0 || !p) ds_die("out of memory (%zu bytes)", m);
#ifdef MADV_HUGEPAGE
    madvise(p, m, MADV_HUGEPAGE); /* advisory: without it, 4 KiB pages */
#endif
    return p;
}

/* Scratch of rows_conv, grown to the largest piece and kept for the
 * process (HDF5 is called from one thread): no allocation per call. */
static void *conv_scratch(int k, size_t n)
{
    static void *p[2];
    static size_t cap[2];
    if (n > cap[k]) {
        free(p[k]);
        p[k] = ds_buf_alloc(n);
        cap[k] = n;
    }
    return p[k];
}

/* Piecewise conversion keeps the scratch memory small for big tensors:
 * pieces of about 4 MB of float32 (cache-sized), whole rows. */
static int rows_conv(hid_t dset, ds_dtype stored, ds_dtype mine, int64_t row0, int64_t nrows, void *buf, int write)
{
    if (stored == mine)
        return rows_io(dset, ds_h5_type(stored), row0, nrows, buf, write);
    char where[3200];
    if (!is_float(stored) || !is_float(mine))
        return ds_err(DS_EXIT_FAIL, "%s: cannot convert between %s and %s", ds_h5_where(dset, where, sizeof where),
                      ds_dtype_name(stored), ds_dtype_name(mine));
    int64_t re = row_elems(dset);
    if (re < 0) return ds_errcode();
    int64_t per = (int64_t)(((size_t)1 << 20) / (size_t)(re ? re : 1));
    if (per < 1) per = 1;
    size_t cap = (size_t)(per < nrows ? per : nrows) * (size_t)re;
    void *sbuf = conv_scratch(0, cap * ds_dtype_size(stored) + 1);
    float *tmp = conv_scratch(1, cap * sizeof(float) + 1);
    int rc = 0;
    for (int64_t done = 0; done < nrows && !rc; done += per) {
        int64_t k = nrows - done < per ? nrows - done : per;
        size_t n = (size_t)(k * re);
        char *p = (char *)buf + (size_t)(done * re) * ds_dtype_size(mine);
        if (write) {
            conv(mine, p, stored, sbuf, tmp, n);
            rc = rows_io(dset, ds_h5_type(stored), row0 + done, k, sbuf, 1);
        } else {
            rc = rows_io(dset, ds_h5_type(stored), row0 + done, k, sbuf, 0);
            if (!rc) conv(stored, sbuf, mine, p, tmp, n);
        }
    }
    return rc;
}

int ds_h5_write_rows_conv(hid_t dset, ds_dtype stored, ds_dtype have, int64_t row0, int64_t nrows, const void *buf)
{
    return rows_conv(dset, stored, have, row0, nrows, (void *)buf, 1);
}

int ds_h5_read_rows_conv(hid_t dset, ds_dtype stored, ds_dtype want, int64_t row0, int64_t nrows, void *buf)
{
    return rows_conv(dset, stored, want, row0, nrows, buf, 0);
}
