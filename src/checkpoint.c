/* Resumable job state (src/checkpoint.h). */
#include "config.h"
#include "src/checkpoint.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "src/hash.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint arrays are written in host order, which must be little-endian"
#endif

#define CKPT_MAGIC "deltasoup-checkpoint 1\n"

typedef struct {
    char name[DS_NAME_MAX];
    ds_dtype dtype;
    int64_t n;
    void *data;
} ckpt_array;

struct ds_ckpt {
    char job[DS_NAME_MAX];
    char path[4096]; /* the file it was read from, for messages */
    json_t *record, *state;
    int n_arrays;
    ckpt_array *arrays;
};

ds_ckpt *ds_ckpt_new(const char *job)
{
    ds_ckpt *c = ds_calloc(1, sizeof *c);
    snprintf(c->job, sizeof c->job, "%s", job);
    c->record = json_object();
    c->state = json_object();
    return c;
}

void ds_ckpt_free(ds_ckpt *c)
{
    if (!c) return;
    json_decref(c->record);
    json_decref(c->state);
    for (int i = 0; i < c->n_arrays; i++) free(c->arrays[i].data);
    free(c->arrays);
    free(c);
}

void ds_ckpt_record_str(ds_ckpt *c, const char *key, const char *v)
{
    json_object_set_new(c->record, key, json_string(v));
}

void ds_ckpt_record_int(ds_ckpt *c, const char *key, int64_t v)
{
    json_object_set_new(c->record, key, json_integer(v));
}

/* jansson prints reals with 17 significant digits: an exact round trip. */
void ds_ckpt_record_double(ds_ckpt *c, const char *key, double v) { json_object_set_new(c->record, key, json_real(v)); }
void ds_ckpt_state_int(ds_ckpt *c, const char *key, int64_t v) { json_object_set_new(c->state, key, json_integer(v)); }

static const char *where(const ds_ckpt *c) { return c->path[0] ? c->path : "checkpoint"; }

int ds_ckpt_get_int(const ds_ckpt *c, const char *key, int64_t *v)
{
    json_t *x = json_object_get(c->state, key);
    if (!json_is_integer(x)) return ds_err(DS_EXIT_INPUT, "%s: state field %s missing", where(c), key);
    *v = json_integer_value(x);
    return 0;
}

static int find_array(const ds_ckpt *c, const char *name)
{
    for (int i = 0; i < c->n_arrays; i++)
        if (strcmp(c->arrays[i].name, name) == 0) return i;
    return -1;
}

void ds_ckpt_put_array(ds_ckpt *c, const char *name, ds_dtype t, int64_t n, const void *data)
{
    int i = find_array(c, name);
    if (i < 0) {
        c->arrays = ds_realloc(c->arrays, (size_t)(c->n_arrays + 1) * sizeof *c->arrays);
        i = c->n_arrays++;
    } else {
        free(c->arrays[i].data);
    }
    ckpt_array *a = &c->arrays[i];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->dtype = t;
    a->n = n;
    size_t bytes = (size_t)n * ds_dtype_size(t);
    a->data = ds_malloc(bytes + 1);
    memcpy(a->data, data, bytes);
}

int ds_ckpt_get_array(const ds_ckpt *c, const char *name, ds_dtype t, int64_t n, void *out)
{
    int i = find_array(c, name);
    if (i < 0) return ds_err(DS_EXIT_INPUT, "%s: array %s missing", where(c), name);
    const ckpt_array *a = &c->arrays[i];
    if (a->dtype != t || a->n != n)
        return ds_err(DS_EXIT_INPUT, "%s: array %s is %s[%lld], expected %s[%lld]", where(c), name,
                      ds_dtype_name(a->dtype), (long long)a->n, ds_dtype_name(t), (long long)n);
    memcpy(out, a->data, (size_t)n * ds_dtype_size(t));
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue; /* a signal asking for this very checkpoint */
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int ds_ckpt_write(const ds_ckpt *c, const char *path)
{
    json_t *arrays = json_array();
    int64_t off = 0;
    for (int i = 0; i < c->n_arrays; i++) {
        const ckpt_array *a = &c->arrays[i];
        json_array_append_new(arrays, json_pack("{s:s, s:s, s:I, s:I}", "name", a->name, "dtype",
                                                ds_dtype_name(a->dtype), "count", (json_int_t)a->n, "offset",
                                                (json_int_t)off));
        off += a->n * (int64_t)ds_dtype_size(a->dtype);
    }
    json_t *head = json_pack("{s:s, s:O, s:O, s:o}", "job", c->job, "record", c->record, "state", c->state,
                             "arrays", arrays);
    char *text = json_dumps(head, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(head);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(text);
        return ds_err(DS_EXIT_OUTPUT, "%s: cannot write checkpoint: %s", tmp, strerror(errno));
    }
    ds_sha256 *h = ds_sha256_new();
    const char nl = '\n';
    ds_sha256_update(h, CKPT_MAGIC, strlen(CKPT_MAGIC));
    ds_sha256_update(h, text, strlen(text));
    ds_sha256_update(h, &nl, 1);
    int bad = write_all(fd, CKPT_MAGIC, strlen(CKPT_MAGIC)) || write_all(fd, text, strlen(text)) ||
              write_all(fd, &nl, 1);
    for (int i = 0; i < c->n_arrays && !bad; i++) {
        size_t bytes = (size_t)c->arrays[i].n * ds_dtype_size(c->arrays[i].dtype);
        ds_sha256_update(h, c->arrays[i].data, bytes);
        bad = write_all(fd, c->arrays[i].data, bytes);
    }
    ds_digest d;
    ds_sha256_final(h, &d);
    if (!bad) bad = write_all(fd, d.b, sizeof d.b);
    if (!bad) bad = fsync(fd);
    if (close(fd) != 0) bad = 1;
    free(text);
    if (bad || rename(tmp, path) != 0) {
        rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write checkpoint: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    /* The rename is durable once the folder is synced. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int ds_ckpt_read(const char *path, ds_ckpt **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = ds_read_file(path, &buf, &len);
    if (rc) return rc;
    const size_t ml = strlen(CKPT_MAGIC);
    char *nl = len > ml ? memchr(buf + ml, '\n', len - ml) : NULL;
    if (len < ml + 32 || memcmp(buf, CKPT_MAGIC, ml) != 0 || !nl) {
        free(buf);
        return ds_err(DS_EXIT_INPUT, "%s: not a deltasoup checkpoint", path);
    }
    ds_digest d;
    ds_sha256_buf(buf, len - 32, &d);
    if (memcmp(d.b, buf + len - 32, 32) != 0) {
        free(buf);
        return ds_err(DS_EXIT_INPUT, "%s: checkpoint is damaged (SHA-256 mismatch)", path);
    }
    json_error_t jerr;
    json_t *head = json_loadb(buf + ml, (size_t)(nl - buf) - ml, 0, &jerr);
    const char *job = NULL;
    json_t *record = NULL, *state = NULL, *arrays = NULL;
    if (!head || json_unpack(head, "{s:s, s:o, s:o, s:o}", "job", &job, "record", &record, "state", &state,
                             "arrays", &arrays) != 0 ||
        !json_is_object(record) || !json_is_object(state) || !json_is_array(arrays)) {
        json_decref(head);
        free(buf);
        return ds_err(DS_EXIT_INPUT, "%s: checkpoint header is malformed", path);
    }
    ds_ckpt *c = ds_ckpt_new(job);
    snprintf(c->path, sizeof c->path, "%s", path);
    json_decref(c->record);
    json_decref(c->state);
    c->record = json_incref(record);
    c->state = json_incref(state);
    const char *data = nl + 1;
    const int64_t avail = (int64_t)(buf + len - 32 - data);
    size_t i;
    json_t *a;
    json_array_foreach(arrays, i, a)
    {
        const char *name, *dt;
        json_int_t n, off;
        ds_dtype t;
        if (json_unpack(a, "{s:s, s:s, s:I, s:I}", "name", &name, "dtype", &dt, "count", &n, "offset", &off) != 0 ||
            ds_dtype_parse(dt, &t) != 0 || n < 0 || off < 0 || off > avail ||
            n > (avail - off) / (int64_t)ds_dtype_size(t)) {
            rc = ds_err(DS_EXIT_INPUT, "%s: checkpoint array %zu is malformed", path, i);
            break;
        }
        ds_ckpt_put_array(c, name, t, n, data + off);
    }
    json_decref(head);
    free(buf);
    if (rc) {
        ds_ckpt_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* A field's value for messages. */
static char *field_str(json_t *v)
{
    return v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : ds_strdup("(absent)");
}

int ds_ckpt_match(const ds_ckpt *saved, const ds_ckpt *now, const char *path)
{
    if (strcmp(saved->job, now->job) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: checkpoint of job %s, not %s", path, saved->job, now->job);
    const char *key;
    json_t *v;
    /* Every field of either record, so an added or a dropped one is seen. */
    for (int pass = 0; pass < 2; pass++) {
        json_t *a = pass ? saved->record : now->record, *b = pass ? now->record : saved->record;
        json_object_foreach(a, key, v)
        {
            json_t *w = json_object_get(b, key);
            if (w && json_equal(v, w)) continue;
            json_t *sv = pass ? v : w, *nv = pass ? w : v;
            char *s1 = field_str(sv), *s2 = field_str(nv);
            int rc = ds_err(DS_EXIT_INPUT,
                            "%s: checkpoint belongs to another job: %s was %s, now %s (use another --checkpoint "
                            "folder, or remove it to start over)",
                            path, key, s1, s2);
            free(s1);
            free(s2);
            return rc;
        }
    }
    return 0;
}

int ds_ckpt_mkdir(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char keep = *s;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return ds_err(DS_EXIT_OUTPUT, "%s: cannot create checkpoint folder: %s", p, strerror(errno));
        if (!keep) break;
        *s = keep;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ds_err(DS_EXIT_OUTPUT, "%s: not a folder", dir);
    return 0;
}

static volatile sig_atomic_t stop_signal;
static void on_stop_signal(int sig) { stop_signal = sig; }

void ds_ckpt_signals_catch(ds_ckpt_signals *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    stop_signal = 0;
    sigaction(SIGUSR1, &sa, &saved->usr1);
    sigaction(SIGTERM, &sa, &saved->term);
}

void ds_ckpt_signals_restore(const ds_ckpt_signals *saved)
{
    sigaction(SIGUSR1, &saved->usr1, NULL);
    sigaction(SIGTERM, &saved->term, NULL);
}

int ds_ckpt_stop_requested(void) { return stop_signal; }
