/* Safetensors: header validation, mmap reading, streaming writing, and the
 * Hugging Face config.json of a Llama model. */
#include "config.h"
#include "io/safetensors.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ULL(x) ((unsigned long long)(x))

static uint64_t rd_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

void ds_st_header_free(ds_st_header *h)
{
    for (int i = 0; i < h->n_meta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_vals[i]);
    }
    free(h->meta_keys);
    free(h->meta_vals);
    free(h->tensors);
    memset(h, 0, sizeof *h);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const ds_st_tensor *)a)->info.name, ((const ds_st_tensor *)b)->info.name);
}

int ds_st_header_find(const ds_st_header *h, const char *name)
{
    ds_st_tensor key;
    if (strlen(name) >= sizeof key.info.name) return -1;
    strcpy(key.info.name, name);
    const ds_st_tensor *t = bsearch(&key, h->tensors, (size_t)h->n, sizeof key, cmp_tensor_name);
    return t ? (int)(t - h->tensors) : -1;
}

/* A non-negative JSON integer, or -1. */
static int64_t json_uint(const json_t *v)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 ? -1 : (int64_t)x;
}

static int parse_meta(const char *what, json_t *v, ds_st_header *h)
{
    if (!json_is_object(v)) return ds_err(DS_EXIT_INPUT, "%s: __metadata__ is not an object", what);
    size_t n = json_object_size(v);
    h->meta_keys = ds_calloc(n, sizeof(char *));
    h->meta_vals = ds_calloc(n, sizeof(char *));
    const char *k;
    json_t *s;
    json_object_foreach(v, k, s) {
        if (!json_is_string(s))
            return ds_err(DS_EXIT_INPUT, "%s: __metadata__ value of '%.64s' is not a string", what, k);
        h->meta_keys[h->n_meta] = ds_strdup(k);
        h->meta_vals[h->n_meta] = ds_strdup(json_string_value(s));
        h->n_meta++;
    }
    return 0;
}

static int parse_entry(const char *what, const char *name, json_t *v, uint64_t data_len, ds_st_tensor *t)
{
    size_t nl = strlen(name);
    if (nl == 0) return ds_err(DS_EXIT_INPUT, "%s: a tensor has an empty name", what);
    if (nl >= sizeof t->info.name)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %.64s...: name too long (%zu bytes, limit %d)", what, name, nl,
                      DS_NAME_MAX - 1);
    strcpy(t->info.name, name);
    if (!json_is_object(v)) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: entry is not an object", what, name);
    json_t *dt = NULL, *shape = NULL, *offs = NULL;
    const char *k;
    json_t *f;
    json_object_foreach(v, k, f) {
        if (strcmp(k, "dtype") == 0) dt = f;
        else if (strcmp(k, "shape") == 0) shape = f;
        else if (strcmp(k, "data_offsets") == 0) offs = f;
        else return ds_err(DS_EXIT_INPUT, "%s: tensor %s: unknown field '%.64s'", what, name, k);
    }
    if (!dt || !shape || !offs)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: missing %s", what, name,
                      !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!json_is_string(dt)) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype is not a string", what, name);
    if (ds_dtype_parse(json_string_value(dt), &t->info.dtype) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: unknown or unsupported dtype '%.32s'", what, name,
                      json_string_value(dt));
    if (!json_is_array(shape)) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape is not an array", what, name);
    if (json_array_size(shape) > DS_MAX_DIMS)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: %zu dimensions (at most %d supported)", what, name,
                      json_array_size(shape), DS_MAX_DIMS);
    t->info.ndim = (int)json_array_size(shape);
    uint64_t bytes = ds_dtype_size(t->info.dtype);
    for (int d = 0; d < t->info.ndim; d++) {
        int64_t x = json_uint(json_array_get(shape, (size_t)d));
        if (x < 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape[%d] is not a non-negative integer", what, name, d);
        t->info.shape[d] = x;
        if (__builtin_mul_overflow(bytes, (uint64_t)x, &bytes))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape overflows 64 bits", what, name);
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: data_offsets is not an array of two integers", what, name);
    int64_t b = json_uint(json_array_get(offs, 0)), e = json_uint(json_array_get(offs, 1));
    if (b < 0 || e < 0 || e < b)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: data_offsets must be integers 0 <= begin <= end", what, name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end > data_len)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: data_offsets [%llu, %llu) run past the end of the data "
                      "(%llu bytes): truncated file or lying header", what, name, ULL(b), ULL(e), ULL(data_len));
    if (t->end - t->begin != bytes) {
        char sb[96];
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s of %s needs %llu bytes but data_offsets [%llu, %llu) "
                      "hold %llu", what, name, ds_shape_str(&t->info, sb, sizeof sb), ds_dtype_name(t->info.dtype),
                      ULL(bytes), ULL(b), ULL(e), ULL(e - b));
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const ds_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The data must be tiled exactly: sorted by offset, each tensor starts where
 * the previous one ended, and the last one ends at the end of the file. */
static int check_coverage(const char *what, const ds_st_header *h)
{
    ds_st_tensor *s = ds_malloc(sizeof *s * (size_t)(h->n ? h->n : 1));
    memcpy(s, h->tensors, sizeof *s * (size_t)h->n);
    qsort(s, (size_t)h->n, sizeof *s, cmp_by_offset);
    uint64_t pos = 0;
    int rc = 0;
    for (int i = 0; i < h->n && !rc; i++) {
        if (s[i].begin < pos)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: data_offsets [%llu, %llu) overlap tensor %s [%llu, %llu)",
                        what, s[i].info.name, ULL(s[i].begin), ULL(s[i].end), s[i - 1].info.name,
                        ULL(s[i - 1].begin), ULL(s[i - 1].end));
        else if (s[i].begin > pos)
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: data bytes [%llu, %llu) before it belong to no tensor", what,
                        s[i].info.name, ULL(pos), ULL(s[i].begin));
        pos = s[i].end;
    }
    if (!rc && pos != h->data_len)
        rc = ds_err(DS_EXIT_INPUT, "%s: data bytes [%llu, %llu) at the end belong to no tensor (trailing garbage)",
                    what, ULL(pos), ULL(h->data_len));
    free(s);
    return rc;
}

int ds_st_parse(const char *what, const void *buf, size_t size, ds_st_header *h)
{
    memset(h, 0, sizeof *h);
    const unsigned char *b = buf;
    if (size < 8)
        return ds_err(DS_EXIT_INPUT, "%s: truncated: %zu bytes, less than the 8-byte header length", what, size);
    uint64_t n = rd_le64(b);
    if (n > DS_ST_MAX_HEADER)
        return ds_err(DS_EXIT_INPUT, "%s: header length %llu is absurd (limit %llu bytes): not a safetensors file?",
                      what, ULL(n), ULL(DS_ST_MAX_HEADER));
    if (n > size - 8)
        return ds_err(DS_EXIT_INPUT, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?",
                      what, ULL(n), size);
    if (n < 2 || b[8] != '{')
        return ds_err(DS_EXIT_INPUT, "%s: the header is not a JSON object: not a safetensors file?", what);
    h->data_start = 8 + n;
    h->data_len = size - h->data_start;
    json_error_t je;
    json_t *root = json_loadb((const char *)b + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ds_err(DS_EXIT_INPUT, "%s: invalid header JSON at byte %d: %s", what, 8 + je.position, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = ds_err(DS_EXIT_INPUT, "%s: the header is not a JSON object", what);
        goto out;
    }
    h->tensors = ds_calloc(json_object_size(root) ? json_object_size(root) : 1, sizeof *h->tensors);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) rc = parse_meta(what, v, h);
        else if ((rc = parse_entry(what, key, v, h->data_len, &h->tensors[h->n])) == 0) h->n++;
        if (rc) goto out;
    }
    qsort(h->tensors, (size_t)h->n, sizeof *h->tensors, cmp_tensor_name);
    rc = check_coverage(what, h);
out:
    json_decref(root);
    if (rc) ds_st_header_free(h);
    return rc;
}

/* ---- reading */

int ds_st_open(const char *path, ds_st_file **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds_err(DS_EXIT_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ds_err(DS_EXIT_INPUT, "%s: not a regular file", path);
    }
    ds_st_file *f = ds_calloc(1, sizeof *f);
    f->path = ds_strdup(path);
    f->fd = fd;
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            ds_st_close(f);
            return ds_err(DS_EXIT_INPUT, "%s: cannot mmap: %s", path, strerror(e));
        }
        f->map = m;
    }
    static const unsigned char empty[1];
    int rc = ds_st_parse(path, f->map ? f->map : empty, f->size, &f->h);
    if (rc) {
        ds_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void ds_st_view(const ds_st_file *f, int i, const void **data, void **owned)
{
    const ds_st_tensor *t = &f->h.tensors[i];
    const unsigned char *p = f->map + f->h.data_start + t->begin;
    size_t al = ds_dtype_size(t->info.dtype);
    *owned = NULL;
    if ((uintptr_t)p % al != 0) {
        *owned = ds_malloc((size_t)(t->end - t->begin));
        memcpy(*owned, p, (size_t)(t->end - t->begin));
        p = *owned;
    }
    *data = p;
}

void ds_st_release(const ds_st_file *f, int i)
{
    const ds_st_tensor *t = &f->h.tensors[i];
    if (t->end == t->begin) return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)(f->map + f->h.data_start + t->begin) & ~(pg - 1);
    uintptr_t hi = (uintptr_t)(f->map + f->h.data_start + t->end);
    madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advisory: failure only costs memory */
}

void ds_st_close(ds_st_file *f)
{
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    ds_st_header_free(&f->h);
    free(f->path);
    free(f);
}

/* ---- sets of files (shards) */

typedef struct {
    const char *name;
    int file, idx;
} set_entry;

static int cmp_set_entry(const void *a, const void *b)
{
    return strcmp(((const set_entry *)a)->name, ((const set_entry *)b)->name);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Shard file names of an index, unique, in order of first appearance; the
 * weight_map is returned (a reference owned by *root). */
static int index_load(const char *path, json_t **root, json_t **wmap, char ***files, int *nfiles)
{
    json_error_t je;
    *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!*root) return ds_err(DS_EXIT_INPUT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    *wmap = json_object_get(*root, "weight_map");
    if (!json_is_object(*wmap)) return ds_err(DS_EXIT_INPUT, "%s: no weight_map object", path);
    char *dcopy = ds_strdup(path);
    const char *dir = dirname(dcopy);
    *files = ds_calloc(json_object_size(*wmap) + 1, sizeof(char *));
    *nfiles = 0;
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(*wmap, k, v) {
        const char *fn = json_string_value(v);
        if (!fn || !fn[0] || fn[0] == '/') {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: weight_map value is not a relative file name", path, k);
            break;
        }
        size_t need = strlen(dir) + strlen(fn) + 2;
        char *full = ds_malloc(need);
        snprintf(full, need, "%s/%s", dir, fn);
        int j = 0;
        while (j < *nfiles && strcmp((*files)[j], full) != 0) j++;
        if (j < *nfiles) free(full);
        else (*files)[(*nfiles)++] = full;
    }
    free(dcopy);
    return rc;
}

int ds_st_set_open(int nargs, char *const *args, ds_st_set **out)
{
    *out = NULL;
    if (nargs < 1) return ds_err(DS_EXIT_USAGE, "no safetensors file given");
    json_t *root = NULL, *wmap = NULL;
    char **names = NULL;
    int nnames = 0, rc = 0;
    const char *index = NULL;
    if (nargs == 1 && ends_with(args[0], ".json")) {
        index = args[0];
        rc = index_load(index, &root, &wmap, &names, &nnames);
        if (!rc && nnames == 0) rc = ds_err(DS_EXIT_INPUT, "%s: weight_map is empty", index);
    } else {
        names = ds_calloc((size_t)nargs, sizeof(char *));
        for (int i = 0; i < nargs; i++) names[nnames++] = ds_strdup(args[i]);
    }
    ds_st_set *s = ds_calloc(1, sizeof *s);
    s->files = ds_calloc((size_t)(nnames ? nnames : 1), sizeof *s->files);
    for (int i = 0; i < nnames && !rc; i++) {
        rc = ds_st_open(names[i], &s->files[i]);
        if (!rc) {
            s->n_files++;
            s->n += s->files[i]->h.n;
        }
    }
    set_entry *e = NULL;
    if (!rc) {
        e = ds_malloc(sizeof *e * (size_t)(s->n ? s->n : 1));
        int k = 0;
        for (int i = 0; i < s->n_files; i++)
            for (int j = 0; j < s->files[i]->h.n; j++) e[k++] = (set_entry){s->files[i]->h.tensors[j].info.name, i, j};
        qsort(e, (size_t)s->n, sizeof *e, cmp_set_entry);
        for (int i = 1; i < s->n && !rc; i++)
            if (strcmp(e[i - 1].name, e[i].name) == 0)
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: also in %s", s->files[e[i].file]->path, e[i].name,
                            s->files[e[i - 1].file]->path);
    }
    if (!rc) {
        s->info = ds_malloc(sizeof *s->info * (size_t)(s->n ? s->n : 1));
        s->file_of = ds_malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
        s->index_in = ds_malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
        for (int i = 0; i < s->n; i++) {
            s->info[i] = s->files[e[i].file]->h.tensors[e[i].idx].info;
            s->file_of[i] = e[i].file;
            s->index_in[i] = e[i].idx;
        }
    }
    /* The index must describe the shards exactly. */
    if (!rc && index) {
        const char *k;
        json_t *v;
        json_object_foreach(wmap, k, v) {
            int i = ds_st_set_find(s, k);
            const char *fn = json_string_value(v);
            if (i < 0) rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: listed in the index but in no shard", index, k);
            else if (!ends_with(s->files[s->file_of[i]]->path, fn))
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: index says %s but it is in %s", index, k, fn,
                            s->files[s->file_of[i]]->path);
            if (rc) break;
        }
        if (!rc && json_object_size(wmap) != (size_t)s->n)
            for (int i = 0; i < s->n && !rc; i++)
                if (!json_object_get(wmap, s->info[i].name))
                    rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: in the shard but not in the index %s",
                                s->files[s->file_of[i]]->path, s->info[i].name, index);
    }
    free(e);
    for (int i = 0; i < nnames; i++) free(names[i]);
    free(names);
    json_decref(root);
    if (rc) {
        ds_st_set_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int ds_st_set_find(const ds_st_set *s, const char *name)
{
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(s->info[mid].name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

void ds_st_set_close(ds_st_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) ds_st_close(s->files[i]);
    free(s->files);
    free(s->info);
    free(s->file_of);
    free(s->index_in);
    free(s);
}

/* ---- writing */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = ds_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal (names are UTF-8; quote, backslash and control
 * characters are escaped). */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_tinfo_name(const void *a, const void *b)
{
    return strcmp(((const ds_tinfo *)a)->name, ((const ds_tinfo *)b)->name);
}

int ds_st_layout(int n, const ds_tinfo *tensors, int n_meta, const char *const *meta_keys,
                 const char *const *meta_vals, char **head, size_t *head_len, ds_tinfo **sorted,
                 uint64_t **offsets, uint64_t *file_size)
{
    ds_tinfo *s = ds_malloc(sizeof *s * (size_t)(n ? n : 1));
    memcpy(s, tensors, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_tinfo_name);
    for (int i = 1; i < n; i++)
        if (strcmp(s[i - 1].name, s[i].name) == 0) {
            int rc = ds_err(DS_EXIT_INPUT, "tensor %s: listed twice", s[i].name);
            free(s);
            return rc;
        }
    sbuf b = {0};
    sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
    int first = 1;
    if (n_meta > 0) {
        sb_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(&b, ",");
            sb_json_string(&b, meta_keys[i]);
            sb_str(&b, ":");
            sb_json_string(&b, meta_vals[i]);
        }
        sb_str(&b, "}");
        first = 0;
    }
    uint64_t *off = ds_malloc(sizeof *off * (size_t)(n ? n : 1)), pos = 0;
    for (int i = 0; i < n; i++) {
        char num[64];
        if (!first) sb_str(&b, ",");
        first = 0;
        sb_json_string(&b, s[i].name);
        sb_str(&b, ":{\"dtype\":");
        sb_json_string(&b, ds_dtype_name(s[i].dtype));
        sb_str(&b, ",\"shape\":[");
        for (int d = 0; d < s[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)s[i].shape[d]);
            sb_str(&b, num);
        }
        uint64_t bytes = ds_tinfo_bytes(&s[i]);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", ULL(pos), ULL(pos + bytes));
        sb_str(&b, num);
        off[i] = pos;
        pos += bytes;
    }
    sb_str(&b, "}");
    while ((b.len - 8) % 8) sb_str(&b, " ");
    uint64_t hl = b.len - 8;
    for (int i = 0; i < 8; i++) b.p[i] = (char)(unsigned char)(hl >> (8 * i));
    for (int i = 0; i < n; i++) off[i] += b.len;
    *head = b.p;
    *head_len = b.len;
    *sorted = s;
    *offsets = off;
    *file_size = b.len + pos;
    return 0;
}

struct ds_st_writer {
    char *path;
    int fd, n, rc;
    ds_tinfo *t;
    uint64_t *off;
};

int ds_st_writer_open(const char *path, int create, int n, const ds_tinfo *tensors, int n_meta,
                      const char *const *meta_keys, const char *const *meta_vals, ds_st_writer **out)
{
    *out = NULL;
    char *head;
    size_t hl;
    uint64_t size;
    ds_st_writer *w = ds_calloc(1, sizeof *w);
    int rc = ds_st_layout(n, tensors, n_meta, meta_keys, meta_vals, &head, &hl, &w->t, &w->off, &size);
    if (rc) {
        free(w);
        return rc;
    }
    w->path = ds_strdup(path);
    w->n = n;
    w->fd = open(path, create ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC : O_WRONLY | O_CLOEXEC, 0644);
    if (w->fd < 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot open for writing: %s", path, strerror(errno));
    else if (create && (ds_pwrite_all(w->fd, head, hl, 0) != 0 || ftruncate(w->fd, (off_t)size) != 0))
        rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write the header: %s", path, strerror(errno));
    free(head);
    if (rc) {
        w->rc = rc;
        ds_st_writer_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int ds_st_writer_put(ds_st_writer *w, const char *name, const void *data)
{
    return ds_st_writer_put_part(w, name, 0, data, (size_t)-1);
}

int ds_st_writer_put_part(ds_st_writer *w, const char *name, size_t off, const void *data, size_t n)
{
    ds_tinfo key;
    if (strlen(name) >= sizeof key.name) return ds_err(DS_EXIT_FAIL, "%s: tensor %.64s: not in the layout", w->path, name);
    strcpy(key.name, name);
    const ds_tinfo *t = bsearch(&key, w->t, (size_t)w->n, sizeof key, cmp_tinfo_name);
    if (!t) return ds_err(DS_EXIT_FAIL, "%s: tensor %s: not in the layout", w->path, name);
    size_t bytes = ds_tinfo_bytes(t);
    if (n == (size_t)-1) n = bytes;
    if (off > bytes || n > bytes - off)
        return ds_err(DS_EXIT_FAIL, "%s: tensor %s: bytes [%zu, %zu) outside its %zu", w->path, name, off, off + n, bytes);
    if (ds_pwrite_all(w->fd, data, n, w->off[t - w->t] + off) != 0) {
        int rc = ds_err(DS_EXIT_OUTPUT, "%s: tensor %s: write failed: %s", w->path, name, strerror(errno));
        if (!w->rc) w->rc = rc;
        return rc;
    }
    return 0;
}

int ds_st_writer_close(ds_st_writer *w)
{
    if (!w) return 0;
    int rc = w->rc;
    if (w->fd >= 0 && close(w->fd) != 0 && !rc)
        rc = ds_err(DS_EXIT_OUTPUT, "%s: close failed: %s", w->path, strerror(errno));
    free(w->path);
    free(w->t);
    free(w->off);
    free(w);
    return rc;
}

/* ---- config.json */

static int cfg_int(const char *path, json_t *root, const char *key, int have_default, int dflt, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (!have_default) return ds_err(DS_EXIT_INPUT, "%s: missing %s", path, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return ds_err(DS_EXIT_INPUT, "%s: %s is not a positive integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int cfg_num(const char *path, json_t *root, const char *key, double dflt, float *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return 0;
    }
    if (!json_is_number(v)) return ds_err(DS_EXIT_INPUT, "%s: %s is not a number", path, key);
    *out = (float)json_number_value(v);
    return 0;
}

/* bos_token_id / eos_token_id: absent or null (n = 0), an int, or a list of ints. */
static int cfg_ids(const char *path, json_t *root, const char *key, int *ids, int *n, int *is_list)
{
    json_t *v = json_object_get(root, key);
    *n = 0;
    *is_list = json_is_array(v);
    if (!v || json_is_null(v)) return 0;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    if (count > DS_MAX_SPECIAL_IDS)
        return ds_err(DS_EXIT_INPUT, "%s: %s lists %zu ids (at most %d)", path, key, count, DS_MAX_SPECIAL_IDS);
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > (1 << 30))
            return ds_err(DS_EXIT_INPUT, "%s: %s is not a token id or a list of token ids", path, key);
        ids[(*n)++] = (int)json_integer_value(e);
    }
    return 0;
}

static int rope_num(const char *path, json_t *rs, const char *key, double lo, float *out)
{
    json_t *v = json_object_get(rs, key);
    if (!json_is_number(v) || !(json_number_value(v) >= lo) || !isfinite(json_number_value(v)))
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling.%s: %s (a number >= %g expected)", path, key,
                      v ? "invalid" : "missing", lo);
    *out = (float)json_number_value(v);
    return 0;
}

/* rope_scaling: null, {"rope_type" (or "type"): "default" | "linear" | "llama3", ...}. */
static int cfg_rope_scaling(const char *path, json_t *root, ds_config *c)
{
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return ds_err(DS_EXIT_INPUT, "%s: rope_scaling is not an object or null", path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_string_value(t);
    if (!type) return ds_err(DS_EXIT_INPUT, "%s: rope_scaling has no rope_type", path);
    if (strcmp(type, "default") == 0) return 0;
    int rc;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = DS_ROPE_LINEAR;
        return rope_num(path, rs, "factor", 1, &c->rope_factor);
    }
    if (strcmp(type, "llama3") != 0)
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling type '%.40s' is not supported (linear or llama3)", path, type);
    c->rope_scaling = DS_ROPE_LLAMA3;
    float orig = 0;
    if ((rc = rope_num(path, rs, "factor", 1, &c->rope_factor)) ||
        (rc = rope_num(path, rs, "low_freq_factor", 0, &c->rope_low_freq_factor)) ||
        (rc = rope_num(path, rs, "high_freq_factor", 0, &c->rope_high_freq_factor)) ||
        (rc = rope_num(path, rs, "original_max_position_embeddings", 1, &orig)))
        return rc;
    if (orig != floorf(orig) || orig > (float)(1 << 24))
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling.original_max_position_embeddings is not an integer", path);
    c->rope_original_max_pos = (int)orig;
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || !(c->rope_low_freq_factor > 0))
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling: low_freq_factor %g must be > 0 and below high_freq_factor %g",
                      path, c->rope_low_freq_factor, c->rope_high_freq_factor);
    return 0;
}

/* Keys of the Llama family that the engine does not implement: refused,
 * never ignored. model_type first (a config of another model). */
static int cfg_unsupported(const char *path, json_t *root)
{
    json_t *mt = json_object_get(root, "model_type"), *v;
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama") != 0))
        return ds_err(DS_EXIT_INPUT, "%s: model_type '%.32s' is not supported (llama only)", path,
                      json_is_string(mt) ? json_string_value(mt) : "?");
    v = json_object_get(root, "hidden_act");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "silu") != 0))
        return ds_err(DS_EXIT_INPUT, "%s: hidden_act '%.32s' is not supported (silu only)", path,
                      json_is_string(v) ? json_string_value(v) : "?");
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(root, biases[i]);
        if (v && !json_is_false(v) && !json_is_null(v))
            return ds_err(DS_EXIT_INPUT, "%s: %s %s is not supported (the engine has no biases)", path, biases[i],
                          json_is_true(v) ? "true" : "(not false)");
    }
    v = json_object_get(root, "sliding_window");
    if (v && !json_is_null(v) && !json_is_false(v))
        return ds_err(DS_EXIT_INPUT, "%s: sliding_window is set: not supported (full causal attention only)", path);
    v = json_object_get(root, "use_sliding_window");
    if (json_is_true(v))
        return ds_err(DS_EXIT_INPUT, "%s: use_sliding_window true is not supported (full causal attention only)",
                      path);
    return 0;
}

/* head_dim, when given, must be hidden_size / num_attention_heads. */
static int cfg_head_dim(const char *path, json_t *root, const ds_config *c)
{
    json_t *v = json_object_get(root, "head_dim");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) != c->dim / c->n_heads || c->dim % c->n_heads)
        return ds_err(DS_EXIT_INPUT, "%s: head_dim %s is not supported (hidden_size / num_attention_heads = %d only)",
                      path, json_is_integer(v) ? "!= hidden_size / num_attention_heads" : "not an integer",
                      c->dim / c->n_heads);
    return 0;
}

int ds_hf_config_load(const char *path, ds_config *cfg)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (!ds_file_exists(path)) return ds_err(DS_EXIT_INPUT, "%s: cannot open (config.json of the model)", path);
        return ds_err(DS_EXIT_INPUT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    }
    memset(cfg, 0, sizeof *cfg);
    int rc = 0;
    if (!json_is_object(root)) rc = ds_err(DS_EXIT_INPUT, "%s: not a JSON object", path);
    else rc = cfg_unsupported(path, root);
    if (!rc) rc = cfg_int(path, root, "hidden_size", 0, 0, &cfg->dim);
    if (!rc) rc = cfg_int(path, root, "intermediate_size", 0, 0, &cfg->hidden_dim);
    if (!rc) rc = cfg_int(path, root, "num_hidden_layers", 0, 0, &cfg->n_layers);
    if (!rc) rc = cfg_int(path, root, "num_attention_heads", 0, 0, &cfg->n_heads);
    if (!rc) rc = cfg_int(path, root, "num_key_value_heads", 1, cfg->n_heads, &cfg->n_kv_heads);
    if (!rc) rc = cfg_int(path, root, "vocab_size", 0, 0, &cfg->vocab_size);
    if (!rc) rc = cfg_int(path, root, "max_position_embeddings", 1, 2048, &cfg->max_seq_len);
    if (!rc) rc = cfg_num(path, root, "rms_norm_eps", 1e-6, &cfg->norm_eps);
    if (!rc) rc = cfg_num(path, root, "rope_theta", 10000.0, &cfg->rope_theta);
    if (!rc) {
        json_t *t = json_object_get(root, "tie_word_embeddings");
        if (t && !json_is_boolean(t) && !json_is_null(t))
            rc = ds_err(DS_EXIT_INPUT, "%s: tie_word_embeddings is not a boolean", path);
        cfg->tied_embeddings = json_is_true(t);
    }
    if (!rc) rc = cfg_head_dim(path, root, cfg);
    if (!rc) rc = cfg_rope_scaling(path, root, cfg);
    if (!rc) rc = cfg_ids(path, root, "bos_token_id", cfg->bos_ids, &cfg->n_bos, &cfg->bos_is_list);
    if (!rc) rc = cfg_ids(path, root, "eos_token_id", cfg->eos_ids, &cfg->n_eos, &cfg->eos_is_list);
    json_decref(root);
    return rc ? rc : ds_config_check(cfg, path);
}

/* The shortest decimal that reads back as the same float (1e-05, not
 * 9.99999975e-06), as Python writes the config's numbers. */
static void fmt_float(float x, char *buf, size_t n)
{
    if (x == floorf(x) && fabsf(x) < 1e15f) {
        snprintf(buf, n, "%.1f", (double)x);
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
}

/* ",\n  \"rope_scaling\": {...}" and the bos/eos ids, when the config has them
 * (so a config without them is written exactly as before). */
static void extra_json(const ds_config *c, char *buf, size_t n)
{
    size_t k = 0;
    char f[4][32];
    buf[0] = 0;
    fmt_float(c->rope_factor, f[0], sizeof f[0]);
    fmt_float(c->rope_low_freq_factor, f[1], sizeof f[1]);
    fmt_float(c->rope_high_freq_factor, f[2], sizeof f[2]);
    if (c->rope_scaling == DS_ROPE_LINEAR)
        k += (size_t)snprintf(buf + k, n - k, "  \"rope_scaling\": {\n    \"factor\": %s,\n    \"rope_type\": \"linear\"\n  },\n",
                              f[0]);
    else if (c->rope_scaling == DS_ROPE_LLAMA3)
        k += (size_t)snprintf(buf + k, n - k,
                              "  \"rope_scaling\": {\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n"
                              "    \"low_freq_factor\": %s,\n    \"original_max_position_embeddings\": %d,\n"
                              "    \"rope_type\": \"llama3\"\n  },\n",
                              f[0], f[2], f[1], c->rope_original_max_pos);
    const char *key[2] = {"bos_token_id", "eos_token_id"};
    const int cnt[2] = {c->n_bos, c->n_eos}, list[2] = {c->bos_is_list, c->eos_is_list};
    const int *ids[2] = {c->bos_ids, c->eos_ids};
    for (int j = 0; j < 2 && k < n; j++) {
        if (!cnt[j]) continue;
        k += (size_t)snprintf(buf + k, n - k, "  \"%s\": %s", key[j], list[j] ? "[" : "");
        for (int i = 0; i < cnt[j] && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", ids[j][i]);
        if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s,\n", list[j] ? "]" : "");
    }
}

char *ds_hf_config_json(const ds_config *c, ds_dtype dt)
{
    char eps[32], theta[32], extra[1024];
    extra_json(c, extra, sizeof extra);
    fmt_float(c->norm_eps, eps, sizeof eps);
    fmt_float(c->rope_theta, theta, sizeof theta);
    const char *td = dt == DS_DTYPE_BF16 ? "bfloat16" : dt == DS_DTYPE_F16 ? "float16" : "float32";
    char *s = NULL;
    if (asprintf(&s,
                 "{\n"
                 "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                 "  \"model_type\": \"llama\",\n"
                 "  \"hidden_act\": \"silu\",\n"
                 "  \"hidden_size\": %d,\n"
                 "  \"intermediate_size\": %d,\n"
                 "  \"num_hidden_layers\": %d,\n"
                 "  \"num_attention_heads\": %d,\n"
                 "  \"num_key_value_heads\": %d,\n"
                 "  \"vocab_size\": %d,\n"
                 "  \"max_position_embeddings\": %d,\n"
                 "  \"rms_norm_eps\": %s,\n"
                 "  \"rope_theta\": %s,\n"
                 "%s"
                 "  \"tie_word_embeddings\": %s,\n"
                 "  \"torch_dtype\": \"%s\"\n"
                 "}\n",
                 c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len, eps,
                 theta, extra, c->tied_embeddings ? "true" : "false", td) < 0)
        ds_die("out of memory formatting config.json");
    return s;
}
