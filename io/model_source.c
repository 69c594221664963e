/* A model to import: llama2.c or safetensors as Llama tensors (io/model_source.h). */
#include "io/model_source.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "io/hf_config.h"
#include "io/tok_files.h"

/* "DIR/NAME" (DIR's trailing slashes dropped, "/" kept). */
static char *in_folder(const char *dir, const char *name)
{
    size_t d = strlen(dir);
    while (d > 1 && dir[d - 1] == '/') d--;
    size_t n = d + strlen(name) + 2;
    char *p = ds_malloc(n);
    snprintf(p, n, "%.*s/%s", (int)d, dir, name);
    return p;
}

/* A Hugging Face model folder: config.json, the weights (the index and its
 * shards, or one model.safetensors) and tokenizer.json. */
/* An export into DIR killed while renaming its set leaves a marker in its
 * staging folder DIR/.NAME.export.tmp/ (io/hf_config.h): the folder holds a
 * mix of two sets until that export is rerun. */
static int hf_folder_interrupted(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] != '.' || n < 12 || strcmp(e->d_name + n - 11, ".export.tmp") != 0) continue;
        char *m = ds_malloc(strlen(dir) + n + 32);
        sprintf(m, "%s/%s/.deltasoup-commit", dir, e->d_name);
        if (ds_file_exists(m))
            rc = ds_err(DS_EXIT_INPUT, "%s: an export into this folder was stopped while renaming its files (%s): "
                        "rerun that export to finish it", dir, m);
        free(m);
    }
    closedir(d);
    return rc;
}

static int hf_folder_open(ds_source *s, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ds_err(DS_EXIT_INPUT, "%s: not a folder (--from hf takes a Hugging Face model folder)", dir);
    int bad = hf_folder_interrupted(dir);
    if (bad) return bad;
    s->cfgpath = s->cfg_owned = in_folder(dir, "config.json");
    s->tokpath = in_folder(dir, "tokenizer.json");
    char *w = in_folder(dir, "model.safetensors.index.json");
    if (!ds_file_exists(w)) {
        free(w);
        w = in_folder(dir, "model.safetensors");
    }
    int rc = 0;
    if (!ds_file_exists(w))
        rc = ds_err(DS_EXIT_INPUT, "%s: no model.safetensors.index.json or model.safetensors in the folder", dir);
    else if (!ds_file_exists(s->tokpath))
        rc = ds_err(DS_EXIT_INPUT, "%s: cannot open (a Hugging Face model folder holds its tokenizer.json)",
                    s->tokpath);
    if (!rc) rc = ds_hf_config_load(s->cfgpath, &s->cfg);
    if (!rc) rc = ds_st_set_open(1, &w, &s->st);
    free(w);
    return rc;
}

int ds_source_open(ds_source *s, ds_source_kind kind, int n_in, const char *const *in, const char *cfgpath)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->what = in[0];
    if (kind == DS_SOURCE_LLAMA2C) {
        int rc = ds_llama2c_open(in[0], &s->l2c);
        if (!rc) s->cfg = *ds_llama2c_config(s->l2c);
        return rc;
    }
    if (kind == DS_SOURCE_HF) return hf_folder_open(s, in[0]);
    if (!cfgpath) cfgpath = s->cfg_owned = ds_hf_config_beside(in[0]);
    s->cfgpath = cfgpath;
    int rc = ds_hf_config_load(cfgpath, &s->cfg);
    if (!rc) rc = ds_st_set_open(n_in, (char *const *)in, &s->st);
    return rc;
}

int ds_source_tokenizer(const ds_source *s, const char *tokpath, ds_tokenizer *tok, int *have)
{
    *have = 0;
    memset(tok, 0, sizeof *tok);
    if (s->kind == DS_SOURCE_HF) tokpath = s->tokpath;
    if (!tokpath) return 0;
    FILE *f = fopen(tokpath, "rb");
    int c = ' ';
    while (f && (c = fgetc(f)) != EOF && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) {}
    if (f) fclose(f);
    int rc;
    if (f && c == '{') {
        ds_tok_files tf;
        rc = ds_tok_files_read(tokpath, &tf);
        if (!rc) rc = ds_tok_files_load(tokpath, &tf, s->cfg.vocab_size, tok);
        ds_tok_files_free(&tf);
    } else {
        rc = ds_tokenizer_load_llama2c(tokpath, s->cfg.vocab_size, tok);
    }
    *have = rc == 0;
    return rc;
}

/* Match the safetensors set against the Llama tensors t[0..n) of s->cfg
 * (see ds_source_tensors). */
static int st_match(const ds_ctx *ctx, const ds_source *src, int n, ds_tinfo *t, int want)
{
    const ds_st_set *s = src->st;
    const char *cfgpath = src->cfgpath;
    for (int k = 0; k < n; k++) {
        int i = ds_st_set_find(s, t[k].name);
        if (i < 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: missing (the model of %s needs it)", s->files[0]->path,
                          t[k].name, cfgpath);
        const ds_tinfo *g = &s->info[i];
        const char *file = s->files[s->file_of[i]]->path;
        char sa[96], sb[96];
        if (!ds_tinfo_same_shape(g, &t[k]))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s implies %s", file, t[k].name,
                          ds_shape_str(g, sa, sizeof sa), cfgpath, ds_shape_str(&t[k], sb, sizeof sb));
        if (g->dtype != DS_DTYPE_F32 && g->dtype != DS_DTYPE_F16 && g->dtype != DS_DTYPE_BF16)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: dtype %s (F32, F16 or BF16 expected)", file, t[k].name,
                          ds_dtype_name(g->dtype));
        t[k].dtype = want >= 0 ? (ds_dtype)want : g->dtype;
    }
    for (int i = 0; i < s->n; i++) {
        const char *name = s->info[i].name, *file = s->files[s->file_of[i]]->path;
        int expected = 0;
        for (int k = 0; k < n && !expected; k++) expected = strcmp(t[k].name, name) == 0;
        if (expected) continue;
        size_t nl = strlen(name);
        if (nl > 28 && strcmp(name + nl - 28, ".self_attn.rotary_emb.inv_freq") == 0) continue;
        if (src->cfg.tied_embeddings && strcmp(name, "lm_head.weight") == 0) {
            ds_printf0(ctx, "[import] note: %s: lm_head.weight ignored (tie_word_embeddings is true in %s)\n", file,
                       cfgpath);
            continue;
        }
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: not a tensor of the Llama model of %s", file, name, cfgpath);
    }
    return 0;
}

int ds_source_tensors(ds_source *s, const ds_ctx *ctx, int want)
{
    const int l2c = s->kind == DS_SOURCE_LLAMA2C;
    s->n = ds_model_llama_tensors(&s->cfg, l2c && want >= 0 ? (ds_dtype)want : DS_DTYPE_F32, &s->tensors);
    return l2c ? 0 : st_match(ctx, s, s->n, s->tensors, want);
}

static int nonfinite_check(const char *file, const ds_tinfo *t, const void *data, int allow)
{
    int64_t k = ds_find_nonfinite(t->dtype, data, (size_t)ds_tinfo_numel(t));
    if (k < 0 || allow) return 0;
    float v;
    ds_to_f32(t->dtype, (const char *)data + (size_t)k * ds_dtype_size(t->dtype), &v, 1);
    return ds_err(DS_EXIT_INPUT, "%s: tensor %s: non-finite value %s at index %lld (--allow-nonfinite imports it)",
                  file, t->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (long long)k);
}

int ds_source_copy(ds_source *s, int k, ds_model_file *mf, float *buf, int allow_nonfinite)
{
    const ds_tinfo *t = &s->tensors[k];
    int rc;
    if (s->l2c) {
        ds_tinfo src = *t;
        src.dtype = DS_DTYPE_F32;
        if ((rc = ds_llama2c_read(s->l2c, t->name, buf))) return rc;
        if ((rc = nonfinite_check(s->what, &src, buf, allow_nonfinite))) return rc;
        return ds_model_write_tensor(mf, t->name, DS_DTYPE_F32, buf);
    }
    int i = ds_st_set_find(s->st, t->name);
    ds_st_file *f = s->st->files[s->st->file_of[i]];
    int j = s->st->index_in[i];
    const void *data;
    void *owned;
    ds_st_view(f, j, &data, &owned);
    rc = nonfinite_check(f->path, &f->h.tensors[j].info, data, allow_nonfinite);
    if (!rc) rc = ds_model_write_tensor(mf, t->name, f->h.tensors[j].info.dtype, data);
    free(owned);
    ds_st_release(f, j);
    return rc;
}

int ds_source_files(const ds_source *s, int n_in, const char *const *in, const char *extra, const char ***files)
{
    const int n_st = s->st ? s->st->n_files : 0;
    const char **v = ds_calloc((size_t)(n_in + n_st + 4), sizeof *v);
    int n = 0;
    for (int i = 0; i < n_in; i++) v[n++] = in[i];
    for (int i = 0; i < n_st; i++) v[n++] = s->st->files[i]->path;
    v[n++] = s->cfgpath;
    v[n++] = s->tokpath;
    v[n++] = extra;
    *files = v;
    return n;
}

void ds_source_close(ds_source *s)
{
    free(s->tensors);
    ds_llama2c_close(s->l2c);
    ds_st_set_close(s->st);
    free(s->cfg_owned);
    free(s->tokpath);
    memset(s, 0, sizeof *s);
}
