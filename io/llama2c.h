/* llama2.c legacy checkpoints (docs/formats.md "llama2.c"), read as Hugging
 * Face Llama tensors.
 *
 * File: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; vocab_size < 0: unshared classifier),
 * then float32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
 * rms_final, freq_cis_real, freq_cis_imag [, wcls]. The size must match the
 * header exactly. */
#ifndef DS_IO_LLAMA2C_H
#define DS_IO_LLAMA2C_H
#include <stdint.h>
#include "src/ds.h"

#define DS_LLAMA2C_HEADER_BYTES 28
/* First int32 of llama2.c's versioned exports (export.py version >= 1). */
#define DS_LLAMA2C_MAGIC 0x616b3432

typedef struct ds_llama2c ds_llama2c;

/* Open and validate the header and the file size. The config gets
 * norm_eps 1e-5, rope_theta 10000, max_seq_len = seq_len,
 * tied_embeddings = (vocab_size > 0). */
int ds_llama2c_open(const char *path, ds_llama2c **out);
const ds_config *ds_llama2c_config(const ds_llama2c *f);
/* Byte size a header implies (0 on overflow). */
uint64_t ds_llama2c_file_size(const ds_config *cfg);
/* Read one tensor by its Hugging Face name (model.embed_tokens.weight,
 * model.layers.{i}.self_attn.q_proj.weight, ...) as float32 in Hugging Face
 * layout into dst (numel floats): q_proj/k_proj rows go from llama2.c's
 * interleaved RoPE pairs to rotate-half order, per head
 * (HF row i = row 2i, HF row hs/2 + i = row 2i + 1). */
int ds_llama2c_read(ds_llama2c *f, const char *name, float *dst);
void ds_llama2c_close(ds_llama2c *f);
#endif
