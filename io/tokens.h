/* Token windows from a text file: the training data of finetune and the
 * calibration data of fit-scales, one loader.
 *
 * The file splits into documents (io/text.h: blank lines or <|endoftext|>),
 * each document is tokenized with BOS, and the documents are concatenated
 * into one token stream. A job then takes windows of the stream:
 *   - ds_tokens_batch (finetune): B windows of T+1 tokens at seeded random
 *     offsets, drawn afresh at every step;
 *   - ds_token_windows (fit-scales): the stream cut into fixed windows of T
 *     tokens, a seeded sample of them split into training and held-out
 *     windows, the training windows walked epoch by epoch in a seeded order.
 * Every draw is a pure function of (seed, step or position), so a
 * checkpoint needs no sampler state. No MPI: every rank loads the same
 * stream and takes its own rows. */
#ifndef DS_IO_TOKENS_H
#define DS_IO_TOKENS_H
#include <stdint.h>
#include "io/text.h"
#include "io/tokenizer.h"

typedef struct {
    const char *path;  /* borrowed, for messages */
    char sha256[65];   /* SHA-256 of the file's bytes */
    ds_text_docs docs; /* between ds_tokens_read and ds_tokens_encode */
    int *tok;          /* the stream: every document after a BOS */
    int64_t n;         /* its tokens */
} ds_tokens;

/* Read and split path (ds_text_load: DS_EXIT_INPUT when unreadable, not
 * text, or without any document) and hash its bytes. */
int ds_tokens_read(const char *path, ds_tokens *t);
/* Tokenize the documents read into the stream (and drop them); DS_EXIT_INPUT
 * naming the file and document when the tokenizer refuses one (text that is
 * not UTF-8 for a Hugging Face tokenizer). */
int ds_tokens_encode(ds_tokens *t, ds_tokenizer *tok);
/* Both. */
int ds_tokens_load(const char *path, ds_tokenizer *tok, ds_tokens *t);
void ds_tokens_free(ds_tokens *t);

/* ---- finetune: random windows. Row b of the batch of step `step` is the
 * window at offset rng % (n - T) of a splitmix64 stream seeded with
 * seed * 0x9e3779b97f4a7c15 + step, drawn for every b in order; rows
 * [lo, hi) are copied into tokens[(b - lo) * T ...] (T tokens) and targets
 * (the same window shifted by one). Needs n > T. */
void ds_tokens_batch(const ds_tokens *t, int T, int64_t B, uint64_t seed, int64_t step, int64_t lo, int64_t hi,
                     int *tokens, int *targets);

/* ---- fit-scales: fixed windows. */
typedef struct {
    int T;
    int64_t available;      /* n / T windows in the stream */
    int64_t n_train, n_hold;
    int *train, *hold;      /* [n_train, T] and [n_hold, T] tokens */
    int64_t epoch, *perm;   /* the current epoch's order (ds_token_windows_train) */
} ds_token_windows;

/* Cut t's stream into windows of T tokens, take min(available, samples) of
 * them in an order shuffled with seed ^ "calib" (Fisher-Yates, splitmix64),
 * and hold the last floor(holdout * taken) out (at least 1 when holdout > 0
 * and 2 or more are taken). DS_EXIT_INPUT naming t->path when no training
 * window is left. */
int ds_token_windows_cut(const ds_tokens *t, int T, int64_t samples, double holdout, uint64_t seed,
                         ds_token_windows *w);
/* The training window of global sample position p (step s, row r: p =
 * (s - 1) * batch + r): epoch e = p / n_train walks a permutation of the
 * training windows seeded by seed * 0x9e3779b97f4a7c15 + e. A pure function
 * of the position (w only caches the current epoch's permutation). */
const int *ds_token_windows_train(ds_token_windows *w, uint64_t seed, int64_t p);
void ds_token_windows_free(ds_token_windows *w);
#endif
