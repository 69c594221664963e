/* A model to import (deltasoup import): a llama2.c checkpoint or a set of
 * Hugging Face safetensors files, read as the Llama tensors of a deltasoup
 * checkpoint (Hugging Face names and layout). Every rank opens the source
 * (headers only); each then copies the tensors it owns into the output. */
#ifndef DS_IO_MODEL_SOURCE_H
#define DS_IO_MODEL_SOURCE_H
#include "io/h5_model.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "src/ctx.h"

typedef enum { DS_SOURCE_LLAMA2C, DS_SOURCE_SAFETENSORS, DS_SOURCE_HF } ds_source_kind;

typedef struct {
    ds_source_kind kind;
    const char *what;    /* the first input, for messages */
    const char *cfgpath; /* safetensors, hf: the config.json read */
    char *tokpath;       /* hf: the folder's tokenizer.json */
    ds_config cfg;
    ds_llama2c *l2c;
    ds_st_set *st;
    int n;            /* the output's tensors (ds_source_tensors) */
    ds_tinfo *tensors;
    char *cfg_owned;
} ds_source;

/* Open the inputs and read the config: llama2c takes one MODEL.bin;
 * safetensors one file, the shards or model.safetensors.index.json, with
 * cfgpath (NULL: config.json beside the first input); hf one folder holding
 * config.json, model.safetensors.index.json (+ its shards) or
 * model.safetensors, and tokenizer.json (cfgpath NULL). 0 or a ds_err code;
 * close s either way. */
int ds_source_open(ds_source *s, ds_source_kind kind, int n_in, const char *const *in, const char *cfgpath);
/* The output's tensor list, s->tensors[0..s->n), in dtype want (-1: llama2c
 * f32, safetensors as stored). Safetensors: every tensor present with its
 * shape and a float dtype; nothing else but tensors that carry no
 * information (rotary inv_freq buffers, a tied lm_head, noted on rank 0). */
int ds_source_tensors(ds_source *s, const ds_ctx *ctx, int want);
/* Every file the source reads, for the output-path check (io/outfile.h):
 * the N_IN inputs IN, the safetensors files opened, the config.json, the
 * folder's tokenizer.json and EXTRA (may be NULL; NULL entries are to be
 * skipped). *FILES is malloc'd (free it; the strings are borrowed); returns
 * its length. */
int ds_source_files(const ds_source *s, int n_in, const char *const *in, const char *extra, const char ***files);
/* Read tensor k of the list and write it to mf. buf holds the largest tensor
 * in float32 (llama2c; NULL for safetensors). NaN/Inf are refused unless
 * allow_nonfinite. */
int ds_source_copy(ds_source *s, int k, ds_model_file *mf, float *buf, int allow_nonfinite);
/* The tokenizer to store: hf: the folder's tokenizer.json (and
 * tokenizer_config.json); otherwise tokpath (NULL: none, *have = 0), a
 * Hugging Face tokenizer.json (with the tokenizer_config.json beside it) or
 * a llama2.c tokenizer file, told apart by content. Its ids must fit the
 * model's vocabulary (which may be larger: padded embeddings). */
int ds_source_tokenizer(const ds_source *s, const char *tokpath, ds_tokenizer *tok, int *have);
void ds_source_close(ds_source *s);
#endif
