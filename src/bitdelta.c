/* BitDelta coding plan and ratio accounting (docs/bitdelta.md). */
#include "config.h"
#include "src/bitdelta.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"

const char *const ds_scale_kind_names[] = {"tensor", "row", "col", NULL};
#define mode_names ds_scale_kind_names

const char *ds_scale_kind_name(ds_scale_kind m)
{
    return (unsigned)m < 3 ? mode_names[m] : "?";
}

int ds_scale_kind_parse(const char *s, ds_scale_kind *m)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *m = (ds_scale_kind)i;
            return 0;
        }
    return -1;
}

/* q,k,v,o and gate,up,down of every block (Hugging Face Llama names). */
static const char *const default_globs[] = {
    "model.layers.*.self_attn.*_proj.weight",
    "model.layers.*.mlp.*_proj.weight",
};

int ds_delta_default_coded(const ds_tinfo *t)
{
    if (t->ndim != 2) return 0;
    for (size_t i = 0; i < sizeof default_globs / sizeof default_globs[0]; i++)
        if (ds_glob_match(default_globs[i], t->name)) return 1;
    return 0;
}

void ds_delta_entry_code(ds_delta_entry *e, ds_scale_kind m)
{
    e->coded = 1;
    e->mode = m;
    e->rows = e->t.shape[0];
    e->cols = e->t.shape[1];
    e->words_per_row = (e->cols + 63) / 64;
    e->n_scales = m == DS_SCALE_ROW ? e->rows : m == DS_SCALE_COL ? e->cols : 1;
}

int ds_delta_plan(int n, const ds_tinfo *tensors, const ds_delta_options *o, ds_delta_entry *out)
{
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].t = tensors[i];
        out[i].coded = ds_delta_default_coded(&tensors[i]);
    }
    for (int g = 0; g < o->n_bits_for; g++) {
        int hits = 0;
        for (int i = 0; i < n; i++) {
            if (!ds_glob_match(o->bits_for[g], tensors[i].name)) continue;
            if (tensors[i].ndim != 2) {
                char sh[96];
                return ds_err(DS_EXIT_USAGE, "--bits-for '%s': tensor %s is %s, only 2-D tensors can be coded with 1 bit",
                              o->bits_for[g], tensors[i].name, ds_shape_str(&tensors[i], sh, sizeof sh));
            }
            out[i].coded = 1;
            hits++;
        }
        if (!hits) return ds_err(DS_EXIT_USAGE, "--bits-for '%s' matches no tensor", o->bits_for[g]);
    }
    for (int g = 0; g < o->n_dense_for; g++) {
        int hits = 0;
        for (int i = 0; i < n; i++)
            if (ds_glob_match(o->dense_for[g], tensors[i].name)) {
                out[i].coded = 0;
                hits++;
            }
        if (!hits) return ds_err(DS_EXIT_USAGE, "--dense-for '%s' matches no tensor", o->dense_for[g]);
    }
    for (int i = 0; i < n; i++)
        if (out[i].coded) ds_delta_entry_code(&out[i], o->mode);
    return 0;
}

uint64_t ds_delta_entry_bytes(const ds_delta_entry *e, ds_delta_sizes *s)
{
    uint64_t full = (uint64_t)ds_tinfo_bytes(&e->t), stored;
    if (s) s->full += full;
    if (e->coded) {
        uint64_t sg = (uint64_t)e->rows * (uint64_t)e->words_per_row * 8u, sc = (uint64_t)e->n_scales * 4u;
        if (s) {
            s->signs += sg;
            s->scales += sc;
        }
        stored = sg + sc;
    } else {
        if (s) s->dense += full;
        stored = full;
    }
    return stored;
}

double ds_delta_ratio(int n, const ds_delta_entry *e, ds_delta_sizes *s)
{
    ds_delta_sizes z;
    if (!s) s = &z;
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) ds_delta_entry_bytes(&e[i], s);
    uint64_t stored = s->signs + s->scales + s->dense;
    return stored ? (double)s->full / (double)stored : 0.0;
}

void ds_delta_scales(const ds_delta_entry *e, const double *row_abs, const double *col_abs, float *scales)
{
    if (e->mode == DS_SCALE_ROW) {
        for (int64_t i = 0; i < e->rows; i++) scales[i] = (float)(row_abs[i] / (double)e->cols);
    } else if (e->mode == DS_SCALE_COL) {
        for (int64_t j = 0; j < e->cols; j++) scales[j] = (float)(col_abs[j] / (double)e->rows);
    } else {
        double sum = 0;
        for (int64_t i = 0; i < e->rows; i++) sum += row_abs[i];
        scales[0] = (float)(sum / ((double)e->rows * (double)e->cols));
    }
}

/* Elements converted per step of the chunked float loops (two 16 KiB stacks). */
#define CHUNK 4096

/* The first non-finite delta of rows [r0, r0 + nr) of W_f (wf: row r0 on)
 * against W_b (wb: wb_rows rows that repeat down those rows), as a flat
 * index of the tensor, or -1; row_abs: those rows' |delta| sums (for row r0
 * on). |delta| sums are finite exactly when every delta is (no float sum of
 * a tensor overflows a double): the elements are looked at only in a row
 * whose sum is not. */
static int64_t first_bad(const ds_delta_entry *e, ds_dtype dt, const void *wf, const void *wb, int64_t wb_rows,
                         int64_t r0, int64_t nr, const double *row_abs)
{
    const size_t es = ds_dtype_size(dt), cols = (size_t)e->cols;
    for (int64_t i = 0; i < nr; i++) {
        if (isfinite(row_abs[i])) continue;
        float a[CHUNK], b[CHUNK];
        for (size_t j0 = 0; j0 < cols; j0 += CHUNK) {
            size_t m = cols - j0 < CHUNK ? cols - j0 : CHUNK;
            ds_to_f32(dt, (const char *)wf + ((size_t)i * cols + j0) * es, a, m);
            ds_to_f32(dt, (const char *)wb + ((size_t)(i % wb_rows) * cols + j0) * es, b, m);
            for (size_t j = 0; j < m; j++)
                if (!isfinite(a[j] - b[j])) return (r0 + i) * e->cols + (int64_t)(j0 + j);
        }
    }
    return -1;
}

/* The one coding loop: W_f (rows x cols) against W_b, both of dtype dt.
 * wb holds wb_rows rows that repeat down the matrix (wb_rows == rows: a
 * whole base; 1: one row, e.g. of zeros); the kernel runs on blocks of
 * wb_rows rows, in order (its row sums do not depend on the blocks). */
static int64_t code(const ds_delta_entry *e, ds_dtype dt, const void *wf, const void *wb, int64_t wb_rows, uint64_t *bits,
                    float *scales)
{
    const size_t es = ds_dtype_size(dt), cols = (size_t)e->cols, wpr = (size_t)e->words_per_row;
    double *row_abs = ds_malloc(sizeof(double) * (size_t)e->rows);
    double *col_abs = e->mode == DS_SCALE_COL ? ds_calloc((size_t)e->cols, sizeof(double)) : NULL;
    for (int64_t r0 = 0; r0 < e->rows; r0 += wb_rows) {
        const size_t nr = (size_t)(e->rows - r0 < wb_rows ? e->rows - r0 : wb_rows);
        ds_bitpack_compress((ds_kdtype)dt, (const char *)wf + (size_t)r0 * cols * es, wb, nr, cols, bits + (size_t)r0 * wpr,
                            row_abs + r0, col_abs);
    }
    int64_t bad = first_bad(e, dt, wf, wb, wb_rows, 0, e->rows, row_abs);
    if (bad < 0) ds_delta_scales(e, row_abs, col_abs, scales);
    free(row_abs);
    free(col_abs);
    return bad;
}

void ds_delta_coder_begin(ds_delta_coder *c, const ds_delta_entry *e)
{
    c->e = e;
    c->dt = e->t.dtype;
    c->zero = NULL;
    c->row_abs = ds_malloc(sizeof(double) * (size_t)(e->rows ? e->rows : 1));
    c->col_abs = e->mode == DS_SCALE_COL ? ds_calloc((size_t)e->cols + 1, sizeof(double)) : NULL;
}

void ds_delta_coder_begin_f32(ds_delta_coder *c, const ds_delta_entry *e)
{
    ds_delta_coder_begin(c, e);
    c->dt = DS_DTYPE_F32;
    c->zero = ds_calloc((size_t)e->cols + 1, sizeof(float));
}

int64_t ds_delta_coder_rows(ds_delta_coder *c, const void *wf, const void *wb, int64_t r0, int64_t nr, uint64_t *bits)
{
    const ds_delta_entry *e = c->e;
    if (c->zero) { /* against one row of zeros, a row at a time, as code() with wb_rows 1 */
        const size_t cols = (size_t)e->cols, wpr = (size_t)e->words_per_row;
        for (int64_t i = 0; i < nr; i++)
            ds_bitpack_compress(DS_KDT_F32, (const float *)wf + (size_t)i * cols, c->zero, 1, cols,
                                bits + (size_t)(r0 + i) * wpr, c->row_abs + r0 + i, c->col_abs);
        return first_bad(e, DS_DTYPE_F32, wf, c->zero, 1, r0, nr, c->row_abs + r0);
    }
    ds_bitpack_compress((ds_kdtype)e->t.dtype, wf, wb, (size_t)nr, (size_t)e->cols,
                        bits + (size_t)r0 * (size_t)e->words_per_row, c->row_abs + r0, c->col_abs);
    return first_bad(e, e->t.dtype, wf, wb, nr > 0 ? nr : 1, r0, nr, c->row_abs + r0);
}

void ds_delta_coder_end(ds_delta_coder *c, float *scales)
{
    if (scales) ds_delta_scales(c->e, c->row_abs, c->col_abs, scales);
    free(c->row_abs);
    free(c->col_abs);
    free(c->zero);
    c->row_abs = c->col_abs = NULL;
    c->zero = NULL;
}

int64_t ds_delta_code(const ds_delta_entry *e, const void *wf, const void *wb, uint64_t *bits, float *scales)
{
    return code(e, e->t.dtype, wf, wb, e->rows > 0 ? e->rows : 1, bits, scales);
}

int64_t ds_delta_code_f32(const ds_delta_entry *e, const float *x, uint64_t *bits, float *scales)
{
    float *zero = ds_calloc((size_t)e->cols + 1, sizeof(float));
    int64_t bad = code(e, DS_DTYPE_F32, x, zero, 1, bits, scales);
    free(zero);
    return bad;
}

int64_t ds_delta_dense(ds_dtype dt, const void *wf, const void *wb, size_t n, void *out)
{
    size_t es = ds_dtype_size(dt);
    float a[CHUNK], b[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        ds_to_f32(dt, (const char *)wf + i0 * es, a, m);
        ds_to_f32(dt, (const char *)wb + i0 * es, b, m);
        for (size_t j = 0; j < m; j++) {
            a[j] -= b[j];
            if (!isfinite(a[j])) return (int64_t)(i0 + j);
        }
        ds_from_f32(dt, a, (char *)out + i0 * es, m);
    }
    return -1;
}

void ds_delta_add_dense(ds_dtype dt, void *w, ds_dtype ddt, const void *d, size_t n)
{
    size_t es = ds_dtype_size(dt), des = ds_dtype_size(ddt);
    float a[CHUNK], b[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        ds_to_f32(dt, (char *)w + i0 * es, a, m);
        ds_to_f32(ddt, (const char *)d + i0 * des, b, m);
        for (size_t j = 0; j < m; j++) a[j] += b[j];
        ds_from_f32(dt, a, (char *)w + i0 * es, m);
    }
}

int ds_delta_check_base(const char *delta_path, const char *delta_base_sha256, const char *base_path,
                           const char *base_sha256, int force, int rank)
{
    if (base_sha256[0] && strcmp(delta_base_sha256, base_sha256) == 0) return 0;
    char msg[1024];
    if (!base_sha256[0])
        snprintf(msg, sizeof msg, "%s: the base %s records no content hash, so the delta (made for base sha256 %.16s...) cannot be checked against it",
                 delta_path, base_path, delta_base_sha256);
    else
        snprintf(msg, sizeof msg, "%s: delta was made for base sha256 %.16s..., but %s has sha256 %.16s...", delta_path,
                 delta_base_sha256, base_path, base_sha256);
    if (!force) return ds_err(DS_EXIT_INPUT, "%s (use --force to apply it anyway)", msg);
    if (rank == 0) {
        fprintf(stderr, "deltasoup: warning: %s (--force: applying it anyway)\n", msg);
        fflush(stderr);
    }
    return 0;
}

int ds_delta_config_same(const ds_config *a, const ds_config *b)
{
    return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->vocab_size == b->vocab_size &&
           a->tied_embeddings == b->tied_embeddings;
}

int ds_delta_check_config(const char *delta_path, const ds_config *dcfg, const char *base_path,
                             const ds_config *bcfg)
{
    if (ds_delta_config_same(dcfg, bcfg)) return 0;
    return ds_err(DS_EXIT_INPUT, "%s: made for a model with dim %d, hidden %d, %d layers, %d/%d heads, vocab %d; %s has dim %d, hidden %d, %d layers, %d/%d heads, vocab %d",
                  delta_path, dcfg->dim, dcfg->hidden_dim, dcfg->n_layers, dcfg->n_heads, dcfg->n_kv_heads,
                  dcfg->vocab_size, base_path, bcfg->dim, bcfg->hidden_dim, bcfg->n_layers, bcfg->n_heads,
                  bcfg->n_kv_heads, bcfg->vocab_size);
}

int ds_delta_shapes_config(const char *name, ds_config *cfg, ds_dtype *dt)
{
    if (strcmp(name, "llama-7b") != 0)
        return ds_err(DS_EXIT_USAGE, "--shapes '%s': unknown model family (known: llama-7b)", name);
    /* Llama 2 7B: untied head, multi-head attention (32 kv heads). */
    *cfg = (ds_config){.dim = 4096, .hidden_dim = 11008, .n_layers = 32, .n_heads = 32, .n_kv_heads = 32,
                       .vocab_size = 32000, .max_seq_len = 4096, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                       .tied_embeddings = 0};
    *dt = DS_DTYPE_BF16;
    return 0;
}
