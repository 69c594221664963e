/* Hugging Face safetensors files (docs/formats.md "Safetensors"): header
 * parsing and validation, mmap reading (one file or a sharded set), streaming
 * writing at computed offsets, and the HF config.json of a Llama model.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * ({"__metadata__": {str: str}, "name": {"dtype", "shape", "data_offsets"}}),
 * then the data; data_offsets are relative to the data and must tile it
 * exactly (no gap, no overlap, nothing past the end). */
#ifndef DS_IO_SAFETENSORS_H
#define DS_IO_SAFETENSORS_H
#include <stdint.h>
#include "src/ds.h"

/* Safetensors' own limit on the JSON header (100 MB). */
#define DS_ST_MAX_HEADER 100000000ull

typedef struct {
    ds_tinfo info;
    uint64_t begin, end; /* byte range in the data section */
} ds_st_tensor;

typedef struct {
    int n;
    ds_st_tensor *tensors; /* sorted by name (strcmp) */
    int n_meta;
    char **meta_keys, **meta_vals; /* __metadata__, in file order */
    uint64_t data_start;           /* 8 + N */
    uint64_t data_len;             /* file size - data_start */
} ds_st_header;

/* Parse and validate the header of a whole file held in buf[0..size).
 * what names the file in messages. 0, or DS_EXIT_INPUT with ds_err set
 * ("what: tensor NAME: ..."). On success free with ds_st_header_free. */
int ds_st_parse(const char *what, const void *buf, size_t size, ds_st_header *h);
void ds_st_header_free(ds_st_header *h);
/* Index of a tensor by name, or -1. */
int ds_st_header_find(const ds_st_header *h, const char *name);

/* ---- reading: the file is mmap'ed; tensors are viewed in place. */
typedef struct {
    char *path;
    int fd;
    const unsigned char *map;
    size_t size;
    ds_st_header h;
} ds_st_file;

int ds_st_open(const char *path, ds_st_file **out);
/* A view of tensor i's bytes. *owned is NULL when *data points into the map;
 * when the data is not aligned for its dtype (a writer that did not pad the
 * header) it is a malloc'ed aligned copy that the caller frees. */
void ds_st_view(const ds_st_file *f, int i, const void **data, void **owned);
/* Drop tensor i's pages from memory (they are clean: re-read on demand), so
 * that streaming through a file keeps about one tensor resident. */
void ds_st_release(const ds_st_file *f, int i);
void ds_st_close(ds_st_file *f);

/* A model in one file or in shards: args are either one
 * model.safetensors.index.json (shards found beside it), or safetensors
 * files. Every tensor name must be unique across the files; with an index,
 * its weight_map must name exactly the tensors each shard holds. */
typedef struct {
    int n_files;
    ds_st_file **files;
    int n;          /* tensors in all files */
    ds_tinfo *info; /* sorted by name */
    int *file_of;   /* file holding tensor i */
    int *index_in;  /* its index in that file's header */
} ds_st_set;

int ds_st_set_open(int nargs, char *const *args, ds_st_set **out);
int ds_st_set_find(const ds_st_set *s, const char *name);
void ds_st_set_close(ds_st_set *s);

/* ---- writing. The layout is a function of the tensor list alone (sorted by
 * name, data packed in that order, header padded with spaces to a multiple
 * of 8), so independent writers that know the list agree on every offset.
 * ds_st_layout: the header bytes (with the 8-byte length first) and each
 * tensor's absolute file offset (in the order of the sorted list written to
 * *sorted). Metadata pairs may be NULL/0. */
int ds_st_layout(int n, const ds_tinfo *tensors, int n_meta, const char *const *meta_keys,
                 const char *const *meta_vals, char **head, size_t *head_len, ds_tinfo **sorted,
                 uint64_t **offsets, uint64_t *file_size);

typedef struct ds_st_writer ds_st_writer;
/* create: make the file (write the header, size it); otherwise open the file
 * another process created with the same list, to write into it. */
int ds_st_writer_open(const char *path, int create, int n, const ds_tinfo *tensors, int n_meta,
                      const char *const *meta_keys, const char *const *meta_vals, ds_st_writer **out);
/* Write one tensor's bytes (its dtype and shape as listed) at its offset. */
int ds_st_writer_put(ds_st_writer *w, const char *name, const void *data);
/* Bytes [off, off + n) of tensor NAME's data (a tensor written in pieces). */
int ds_st_writer_put_part(ds_st_writer *w, const char *name, size_t off, const void *data, size_t n);
/* Flush and close; returns the first error of the writer's life. */
int ds_st_writer_close(ds_st_writer *w);

/* ---- Hugging Face config.json of a Llama model */
/* Reads hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads (default: num_attention_heads),
 * vocab_size, max_position_embeddings (default 2048), rms_norm_eps (default
 * 1e-6), rope_theta (default 10000), tie_word_embeddings (default false),
 * rope_scaling (null, or rope_type/type "default", "linear" with factor,
 * "llama3" with factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings), bos_token_id / eos_token_id (an int or
 * a list), as Hugging Face's LlamaConfig does; checks the result
 * (ds_config_check). What the engine does not implement is refused
 * (DS_EXIT_INPUT, "PATH: FIELD ..."): model_type other than llama,
 * hidden_act other than silu, attention_bias or mlp_bias true,
 * sliding_window set, use_sliding_window true, head_dim other than
 * hidden_size / num_attention_heads, other rope_scaling types. */
int ds_hf_config_load(const char *path, ds_config *cfg);
/* JSON text of a LlamaConfig (plus architectures, model_type, torch_dtype
 * from dt; rope_scaling and bos/eos ids when the config has them);
 * malloc'ed, ends with a newline. */
char *ds_hf_config_json(const ds_config *cfg, ds_dtype dt);
#endif
