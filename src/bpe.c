/* The BPE merge loop (src/bpe.h). */
#include "config.h"
#include "src/bpe.h"
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

struct ds_bpe_cand {
    int32_t rank, pos, left, right; /* pair at symbol POS (ids LEFT RIGHT when made) */
};

static uint64_t pair_key(int32_t l, int32_t r) { return (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1; }

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void ds_bpe_pairs_init(ds_bpe_pairs *p, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    p->keys = ds_calloc(cap, sizeof *p->keys);
    p->rank = ds_malloc(cap * sizeof *p->rank);
    p->id = ds_malloc(cap * sizeof *p->id);
    p->cap = cap;
    p->n = 0;
}

void ds_bpe_pairs_free(ds_bpe_pairs *p)
{
    free(p->keys);
    free(p->rank);
    free(p->id);
    memset(p, 0, sizeof *p);
}

static void grow(ds_bpe_pairs *p)
{
    ds_bpe_pairs q;
    ds_bpe_pairs_init(&q, p->cap); /* twice the slots */
    for (size_t i = 0; i < p->cap; i++) {
        if (!p->keys[i]) continue;
        size_t s = slot_of(p->keys[i], q.cap);
        while (q.keys[s]) s = (s + 1) & (q.cap - 1);
        q.keys[s] = p->keys[i];
        q.rank[s] = p->rank[i];
        q.id[s] = p->id[i];
        q.n++;
    }
    ds_bpe_pairs_free(p);
    *p = q;
}

int ds_bpe_pairs_put(ds_bpe_pairs *p, int32_t left, int32_t right, int32_t rank, int32_t id)
{
    if (2 * (p->n + 1) > p->cap) grow(p);
    uint64_t k = pair_key(left, right);
    size_t s = slot_of(k, p->cap);
    while (p->keys[s]) {
        if (p->keys[s] == k) return 1;
        s = (s + 1) & (p->cap - 1);
    }
    p->keys[s] = k;
    p->rank[s] = rank;
    p->id[s] = id;
    p->n++;
    return 0;
}

int ds_bpe_pairs_get(const ds_bpe_pairs *p, int32_t left, int32_t right, int32_t *rank, int32_t *id)
{
    if (left < 0 || right < 0 || !p->cap) return 0;
    uint64_t k = pair_key(left, right);
    size_t s = slot_of(k, p->cap);
    while (p->keys[s]) {
        if (p->keys[s] == k) {
            *rank = p->rank[s];
            *id = p->id[s];
            return 1;
        }
        s = (s + 1) & (p->cap - 1);
    }
    return 0;
}

void ds_bpe_work_free(ds_bpe_work *w)
{
    free(w->prev);
    free(w->next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

/* min-heap on (rank, pos) */
static int before(const struct ds_bpe_cand *a, const struct ds_bpe_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(ds_bpe_work *w, size_t *n, struct ds_bpe_cand c)
{
    if (*n == w->heap_cap) {
        w->heap_cap = w->heap_cap ? 2 * w->heap_cap : 64;
        w->heap = ds_realloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&c, &w->heap[up])) break;
        w->heap[i] = w->heap[up];
        i = up;
    }
    w->heap[i] = c;
}

static struct ds_bpe_cand heap_pop(ds_bpe_work *w, size_t *n)
{
    struct ds_bpe_cand top = w->heap[0], last = w->heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (*n) w->heap[i] = last;
    return top;
}

static void candidate(const ds_bpe_pairs *p, ds_bpe_work *w, size_t *hn, const int32_t *ids, int32_t pos)
{
    int32_t nx = w->next[pos], rank, id;
    if (nx < 0 || !ds_bpe_pairs_get(p, ids[pos], ids[nx], &rank, &id)) return;
    heap_push(w, hn, (struct ds_bpe_cand){rank, pos, ids[pos], ids[nx]});
}

size_t ds_bpe_merge(const ds_bpe_pairs *p, int32_t *ids, size_t n, ds_bpe_work *w)
{
    if (n < 2) return n;
    if (n > w->cap) {
        w->cap = n;
        w->prev = ds_realloc(w->prev, n * sizeof *w->prev);
        w->next = ds_realloc(w->next, n * sizeof *w->next);
    }
    for (size_t i = 0; i < n; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) candidate(p, w, &hn, ids, (int32_t)i);
    while (hn) {
        struct ds_bpe_cand c = heap_pop(w, &hn);
        int32_t nx = w->next[c.pos];
        /* a removed symbol has prev == -2; a changed pair has other ids */
        if (w->prev[c.pos] == -2 || nx < 0 || ids[c.pos] != c.left || ids[nx] != c.right) continue;
        int32_t rank, id;
        ds_bpe_pairs_get(p, c.left, c.right, &rank, &id);
        ids[c.pos] = id;
        int32_t nn = w->next[nx];
        w->next[c.pos] = nn;
        if (nn >= 0) w->prev[nn] = c.pos;
        w->prev[nx] = -2;
        if (w->prev[c.pos] >= 0) candidate(p, w, &hn, ids, w->prev[c.pos]);
        candidate(p, w, &hn, ids, c.pos);
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = w->next[i]) ids[m++] = ids[i];
    return m;
}
