/* Text generation with the KV-cached engine (the generate job): greedy at
 * temperature 0, else sampling from softmax(logits / T) with a seeded
 * generator, so that a seed gives the same text every time. */
#ifndef DS_EVAL_GENERATE_H
#define DS_EVAL_GENERATE_H
#include <stdint.h>
#include "src/model.h"

/* Index of the next token from the logits z[0..V): the first argmax at
 * temp 0, else a sample (z is overwritten with the unnormalised weights). */
int ds_generate_pick(float *z, int V, float temp, ds_rng *rng);

/* Called with each new token and the one before it, as it is made. */
typedef void (*ds_generate_fn)(void *arg, int prev, int next);

/* Continue the prompt ids[0..np) (BOS first, 1 <= np < total, total <=
 * max_seq_len) until total positions, stopping before an EOS or BOS. out
 * receives the new ids (room for total - np); on_token may be NULL. Returns
 * how many were made. */
int ds_generate(const ds_llama *m, const int *ids, int np, int total, float temp, uint64_t seed,
                ds_generate_fn on_token, void *arg, int *out);
#endif
