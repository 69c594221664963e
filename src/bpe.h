/* The BPE merge loop, pure (no files): a table of merges (pair of symbol ids
 * -> rank and merged id) and the rank-ordered merge of one word's symbols.
 *
 * ds_bpe_merge applies merges lowest rank first, and among equal ranks the
 * leftmost pair first (Hugging Face tokenizers' order), with a binary heap of
 * candidate pairs over a doubly linked list of symbols: O(n log n) in the
 * word's length, no rescans. Stale heap entries (a neighbour has merged since)
 * are recognised by the pair of ids they were made for and skipped. Symbols
 * with a negative id never merge (io/hf_tokenizer uses them for characters
 * outside the vocabulary). */
#ifndef DS_BPE_H
#define DS_BPE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;   /* (left << 32 | right) + 1; 0 = empty slot */
    int32_t *rank, *id;
    size_t cap, n;
} ds_bpe_pairs;

/* A table sized for about N merges. */
void ds_bpe_pairs_init(ds_bpe_pairs *p, size_t n);
void ds_bpe_pairs_free(ds_bpe_pairs *p);
/* Add the merge LEFT RIGHT -> ID at RANK (ids >= 0); 1 when the pair is already
 * there (kept as it was: the first, best-ranked merge wins), else 0. */
int ds_bpe_pairs_put(ds_bpe_pairs *p, int32_t left, int32_t right, int32_t rank, int32_t id);
/* 1 and *RANK, *ID when LEFT RIGHT merge, else 0. */
int ds_bpe_pairs_get(const ds_bpe_pairs *p, int32_t left, int32_t right, int32_t *rank, int32_t *id);

/* Scratch of the merge loop, grown as needed, reusable across words. */
typedef struct {
    int32_t *prev, *next;
    struct ds_bpe_cand *heap;
    size_t cap, heap_cap;
} ds_bpe_work;

void ds_bpe_work_free(ds_bpe_work *w);
/* Merge the N symbol ids in IDS in place; returns the new count. */
size_t ds_bpe_merge(const ds_bpe_pairs *p, int32_t *ids, size_t n, ds_bpe_work *w);
#endif
