/* Text generation with the KV-cached engine (the generate job): greedy at
 * temperature 0, else sampling from softmax(logits / T) with a seeded
 * generator, so that a seed gives the same text every time. */
#ifndef DS_EVAL_GENERATE_H
#define DS_EVAL_GENERATE_H
#include <stdint.h>
#include <stdio.h>
#include "io/tokenizer.h"
#include "src/model.h"
#include "src/pipeline.h"

/* Index of the next token from the logits z[0..V): the first argmax at
 * temp 0, else a sample (z is overwritten with the unnormalised weights). */
int ds_generate_pick(float *z, int V, float temp, ds_rng *rng);

/* Called with each new token and the one before it, as it is made. */
typedef void (*ds_generate_fn)(void *arg, int prev, int next);

/* Continue the prompt ids[0..np) (BOS first, 1 <= np < total, total <=
 * max_seq_len) until total positions, stopping before any of the n_stop ids
 * stop[] (ds_tokenizer_stop_ids: EOS, BOS, an end-of-turn token). out
 * receives the new ids (room for total - np); on_token may be NULL. Returns
 * how many were made, or -1 - k when the logits are not finite before new
 * token k (0-based; nothing more is made). */
int ds_generate(const ds_llama *m, const int *ids, int np, int total, float temp, uint64_t seed, const int *stop,
                int n_stop, ds_generate_fn on_token, void *arg, int *out);

/* One position (token at pos) through the stages of p, collective over
 * p->group_comm (p NULL: m is the whole model, ds_llama_step): the previous
 * stage's output is received into x (m's dim floats), this stage's is sent
 * to the next. Returns the logits on the last stage, else NULL. */
float *ds_generate_step(const ds_pipe *p, const ds_llama *m, ds_llama_kv *kv, int token, int pos, float *x);

/* The same through a pipeline (src/pipeline.h), collective over the
 * group's ranks (p->group_comm), m being this rank's stage: each position
 * goes through the stages, the last stage picks each new token (the same
 * generator and seed: the same tokens as ds_generate) and tells the group.
 * Every stage returns the same count and out; on_token is called on the
 * ranks that pass it (the caller's printing rank). */
int ds_generate_pipe(const ds_pipe *p, const ds_llama *m, const int *ids, int np, int total, float temp,
                     uint64_t seed, const int *stop, int n_stop, ds_generate_fn on_token, void *arg, int *out);

/* The text of a growing id sequence as it grows, for a tokenizer whose
 * pieces are not text on their own (Hugging Face byte-level pieces, a
 * clean-up that joins " ." to "."): the whole sequence is decoded again
 * after each id and the new suffix written, holding back an incomplete
 * UTF-8 sequence (a trailing U+FFFD) and trailing spaces until the next id
 * shows what they become. What was written is never taken back: should a
 * later id change text already written (a rare clean-up), the stream goes
 * on from the same length. ds_text_stream_end writes the rest. */
typedef struct {
    ds_tokenizer *tok;
    int *ids;
    int n, cap;
    size_t written;
} ds_text_stream;
void ds_text_stream_init(ds_text_stream *s, ds_tokenizer *tok, const int *ids, int n, FILE *f);
void ds_text_stream_push(ds_text_stream *s, int id, FILE *f);
void ds_text_stream_end(ds_text_stream *s, FILE *f);
#endif
