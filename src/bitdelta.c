/* BitDelta coding plan and ratio accounting (docs/bitdelta.md). */
#include "config.h"
#include "src/bitdelta.h"
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"tensor", "row", "col"};

const char *ds_scale_mode_name(ds_scale_mode m)
{
    return (unsigned)m < 3 ? mode_names[m] : "?";
}

int ds_scale_mode_parse(const char *s, ds_scale_mode *m)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *m = (ds_scale_mode)i;
            return 0;
        }
    return -1;
}

/* q,k,v,o and gate,up,down of every block (Hugging Face Llama names). */
static const char *const default_globs[] = {
    "model.layers.*.self_attn.*_proj.weight",
    "model.layers.*.mlp.*_proj.weight",
};

int ds_bitdelta_default_coded(const ds_tinfo *t)
{
    if (t->ndim != 2) return 0;
    for (size_t i = 0; i < sizeof default_globs / sizeof default_globs[0]; i++)
        if (ds_glob_match(default_globs[i], t->name)) return 1;
    return 0;
}

void ds_bd_entry_code(ds_bd_entry *e, ds_scale_mode m)
{
    e->coded = 1;
    e->mode = m;
    e->rows = e->t.shape[0];
    e->cols = e->t.shape[1];
    e->words_per_row = (e->cols + 63) / 64;
    e->n_scales = m == DS_SCALE_ROW ? e->rows : m == DS_SCALE_COL ? e->cols : 1;
}

int ds_bitdelta_plan(int n, const ds_tinfo *tensors, const ds_bd_options *o, ds_bd_entry *out)
{
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].t = tensors[i];
        out[i].coded = ds_bitdelta_default_coded(&tensors[i]);
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
        if (out[i].coded) ds_bd_entry_code(&out[i], o->mode);
    return 0;
}

uint64_t ds_bd_entry_bytes(const ds_bd_entry *e, ds_bd_sizes *s)
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

double ds_bitdelta_ratio(int n, const ds_bd_entry *e, ds_bd_sizes *s)
{
    ds_bd_sizes z;
    if (!s) s = &z;
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) ds_bd_entry_bytes(&e[i], s);
    uint64_t stored = s->signs + s->scales + s->dense;
    return stored ? (double)s->full / (double)stored : 0.0;
}

int ds_bitdelta_shapes_config(const char *name, ds_config *cfg, ds_dtype *dt)
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
