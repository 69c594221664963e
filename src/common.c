/* Common helpers: dtypes, conversions, errors, allocation, time. */
#include "config.h"
#include "src/ds.h"
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct { const char *name; size_t size; } dtype_tab[DS_DTYPE_COUNT] = {
    [DS_DTYPE_F32] = {"F32", 4}, [DS_DTYPE_F16] = {"F16", 2}, [DS_DTYPE_BF16] = {"BF16", 2},
    [DS_DTYPE_U64] = {"U64", 8}, [DS_DTYPE_I32] = {"I32", 4}, [DS_DTYPE_U8] = {"U8", 1},
    [DS_DTYPE_F64] = {"F64", 8},
};

size_t ds_dtype_size(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_tab[t].size : 0; }
const char *ds_dtype_name(ds_dtype t) { return (unsigned)t < DS_DTYPE_COUNT ? dtype_tab[t].name : "?"; }

int ds_dtype_parse(const char *name, ds_dtype *t)
{
    for (int i = 0; i < DS_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_tab[i].name) == 0) {
            *t = (ds_dtype)i;
            return 0;
        }
    return -1;
}

int64_t ds_tinfo_numel(const ds_tinfo *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t ds_tinfo_bytes(const ds_tinfo *t) { return (size_t)ds_tinfo_numel(t) * ds_dtype_size(t->dtype); }

int ds_tinfo_same_shape(const ds_tinfo *a, const ds_tinfo *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

char *ds_shape_str(const ds_tinfo *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

void ds_to_f32(ds_dtype st, const void *src, float *dst, size_t n)
{
    switch (st) {
    case DS_DTYPE_F32: memmove(dst, src, n * 4); break;
    case DS_DTYPE_BF16: for (size_t i = 0; i < n; i++) dst[i] = ds_bf16_to_f32(((const uint16_t *)src)[i]); break;
    case DS_DTYPE_F16: for (size_t i = 0; i < n; i++) dst[i] = ds_f16_to_f32(((const uint16_t *)src)[i]); break;
    case DS_DTYPE_F64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; break;
    default: ds_die("ds_to_f32: unsupported dtype %s", ds_dtype_name(st));
    }
}

void ds_from_f32(ds_dtype dt, const float *src, void *dst, size_t n)
{
    switch (dt) {
    case DS_DTYPE_F32: memmove(dst, src, n * 4); break;
    case DS_DTYPE_BF16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = ds_f32_to_bf16(src[i]); break;
    case DS_DTYPE_F16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = ds_f32_to_f16(src[i]); break;
    case DS_DTYPE_F64: for (size_t i = 0; i < n; i++) ((double *)dst)[i] = src[i]; break;
    default: ds_die("ds_from_f32: unsupported dtype %s", ds_dtype_name(dt));
    }
}

int64_t ds_find_nonfinite(ds_dtype t, const void *p, size_t n)
{
    switch (t) {
    case DS_DTYPE_F32:
        for (size_t i = 0; i < n; i++) if (!isfinite(((const float *)p)[i])) return (int64_t)i;
        return -1;
    case DS_DTYPE_F64:
        for (size_t i = 0; i < n; i++) if (!isfinite(((const double *)p)[i])) return (int64_t)i;
        return -1;
    case DS_DTYPE_BF16: /* exponent all ones */
        for (size_t i = 0; i < n; i++) if ((((const uint16_t *)p)[i] & 0x7f80u) == 0x7f80u) return (int64_t)i;
        return -1;
    case DS_DTYPE_F16:
        for (size_t i = 0; i < n; i++) if ((((const uint16_t *)p)[i] & 0x7c00u) == 0x7c00u) return (int64_t)i;
        return -1;
    default: return -1;
    }
}

const char *ds_rope_kind_name(ds_rope_kind k)
{
    return k == DS_ROPE_LINEAR ? "linear" : k == DS_ROPE_LLAMA3 ? "llama3" : "none";
}

/* The fields beyond the shape: rope scaling and bos/eos ids. */
static int ds_config_check_extra(const ds_config *c, const char *what)
{
    if (c->rope_scaling != DS_ROPE_NONE && c->rope_scaling != DS_ROPE_LINEAR && c->rope_scaling != DS_ROPE_LLAMA3)
        return ds_err(DS_EXIT_INPUT, "%s: unknown rope scaling kind %d", what, (int)c->rope_scaling);
    if (c->rope_scaling != DS_ROPE_NONE && !(c->rope_factor >= 1 && c->rope_factor < 1e6f))
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling factor %g out of range [1, 1e6)", what, c->rope_factor);
    if (c->rope_scaling == DS_ROPE_LLAMA3 &&
        (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !isfinite(c->rope_high_freq_factor) || c->rope_original_max_pos <= 0))
        return ds_err(DS_EXIT_INPUT, "%s: rope_scaling llama3: invalid low_freq_factor=%g, high_freq_factor=%g or "
                      "original_max_position_embeddings=%d (0 < low < high, original > 0)", what,
                      c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    if (c->n_bos < 0 || c->n_bos > DS_MAX_SPECIAL_IDS || c->n_eos < 0 || c->n_eos > DS_MAX_SPECIAL_IDS)
        return ds_err(DS_EXIT_INPUT, "%s: %d bos / %d eos ids (at most %d each)", what, c->n_bos, c->n_eos,
                      DS_MAX_SPECIAL_IDS);
    for (int i = 0; i < c->n_bos + c->n_eos; i++) {
        int id = i < c->n_bos ? c->bos_ids[i] : c->eos_ids[i - c->n_bos];
        if (id < 0 || id >= c->vocab_size)
            return ds_err(DS_EXIT_INPUT, "%s: %s_token_id %d outside the vocabulary (0..%d)", what,
                          i < c->n_bos ? "bos" : "eos", id, c->vocab_size - 1);
    }
    return 0;
}

int ds_config_check(const ds_config *c, const char *what)
{
    const int64_t big = 1 << 24;
    if (c->dim <= 0 || c->dim > big || c->hidden_dim <= 0 || c->hidden_dim > big || c->n_layers <= 0 ||
        c->n_layers > 4096 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->vocab_size <= 0 ||
        c->vocab_size > big || c->max_seq_len <= 0 || c->max_seq_len > big)
        return ds_err(DS_EXIT_INPUT, "%s: invalid model config (dim=%d hidden_dim=%d n_layers=%d n_heads=%d "
                      "n_kv_heads=%d vocab_size=%d max_seq_len=%d)", what, c->dim, c->hidden_dim, c->n_layers,
                      c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len);
    if (c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0 || (c->dim / c->n_heads) % 2 != 0)
        return ds_err(DS_EXIT_INPUT, "%s: inconsistent heads: dim=%d n_heads=%d n_kv_heads=%d (dim must divide "
                      "into heads of even size, n_heads into kv groups)", what, c->dim, c->n_heads, c->n_kv_heads);
    if (!(c->norm_eps > 0 && c->norm_eps < 1) || !(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return ds_err(DS_EXIT_INPUT, "%s: invalid norm_eps=%g or rope_theta=%g", what, c->norm_eps, c->rope_theta);
    return ds_config_check_extra(c, what);
}

/* ---- errors */
static _Thread_local char err_msg[1024];
static _Thread_local int err_code;

/* Messages quote what files hold (attribute strings, names): a control
 * character (C0 or DEL) from a damaged or hostile file is written as \xNN,
 * so the message stays one line and cannot drive the terminal reading the
 * log. */
int ds_err(int code, const char *fmt, ...)
{
    char raw[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)raw; *c && o + 1 < sizeof err_msg; c++) {
        if (*c >= 0x20 && *c != 0x7f) {
            err_msg[o++] = (char)*c;
        } else if (o + 5 < sizeof err_msg) {
            snprintf(err_msg + o, 5, "\\x%02x", *c);
            o += 4;
        } else {
            break;
        }
    }
    err_msg[o] = 0;
    err_code = code ? code : DS_EXIT_FAIL;
    return err_code;
}
const char *ds_errmsg(void) { return err_msg[0] ? err_msg : "unknown error"; }
int ds_errcode(void) { return err_code; }
void ds_err_clear(void) { err_msg[0] = 0; err_code = 0; }

void ds_die_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "deltasoup: fatal: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, DS_EXIT_FAIL);
    exit(DS_EXIT_FAIL);
}

void *ds_malloc_(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) ds_die_(file, line, "out of memory allocating %zu bytes", n);
    return p;
}
void *ds_calloc_(size_t n, size_t sz, const char *file, int line)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) ds_die_(file, line, "out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}
void *ds_realloc_(void *q, size_t n, const char *file, int line)
{
    void *p = realloc(q, n ? n : 1);
    if (!p) ds_die_(file, line, "out of memory reallocating %zu bytes", n);
    return p;
}
char *ds_strdup_(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = ds_malloc_(n, file, line);
    memcpy(p, s, n);
    return p;
}

double ds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *ds_fmt_duration(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm%02ds", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    return buf;
}

size_t ds_peak_rss(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

int ds_glob_match(const char *pattern, const char *s) { return fnmatch(pattern, s, 0) == 0; }

int ds_parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return ds_err(DS_EXIT_USAGE, "%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

int ds_parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return ds_err(DS_EXIT_USAGE, "%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

int ds_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ds_err(DS_EXIT_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) { /* fopen opens a directory for reading */
        fclose(f);
        return ds_err(DS_EXIT_INPUT, "%s: is a directory, not a file", path);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = ds_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = ds_realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f), err = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return ds_err(DS_EXIT_INPUT, "%s: read error: %s", path, strerror(err));
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int ds_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int ds_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = 0;
            return -1;
        }
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int ds_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, c, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = 0;
            return -1;
        }
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}
