/* SentencePiece-style BPE tokenizer in llama2.c's format (io/tokenizer.h). */
#include "config.h"
#include "io/tokenizer.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "io/hf_tokenizer.h"
#include "io/tok_files.h"
#include "src/chat.h"
#include "src/ds.h"

/* Longest piece accepted from a file: real vocabularies stay well under
 * 100 bytes; a larger value means a corrupt or foreign file. */
#define TOK_MAX_PIECE (1 << 16)

typedef struct {
    int *slots;      /* open addressing: id or -1 */
    size_t mask;     /* capacity - 1 (capacity a power of two) */
    char bytes[512]; /* byte b decodes to bytes[2b] (NUL-terminated) */
} tok_index;

static uint64_t tok_hash(const char *s, int len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

int ds_tokenizer_lookup(const ds_tokenizer *tok, const char *piece, int len)
{
    const tok_index *ix = tok->index;
    for (size_t i = tok_hash(piece, len) & ix->mask;; i = (i + 1) & ix->mask) {
        int id = ix->slots[i];
        if (id < 0) return -1;
        if (tok->lengths[id] == len && memcmp(tok->pieces[id], piece, (size_t)len) == 0) return id;
    }
}

/* Build the hash; a duplicated piece keeps its lowest id. */
static void tok_index_build(ds_tokenizer *tok)
{
    tok_index *ix = ds_calloc(1, sizeof *ix);
    size_t cap = 16;
    while (cap < 2 * (size_t)tok->vocab_size) cap *= 2;
    ix->slots = ds_malloc(cap * sizeof *ix->slots);
    memset(ix->slots, 0xff, cap * sizeof *ix->slots);
    ix->mask = cap - 1;
    for (int b = 0; b < 256; b++) ix->bytes[2 * b] = (char)b;
    tok->index = ix;
    for (int id = 0; id < tok->vocab_size; id++) {
        if (ds_tokenizer_lookup(tok, tok->pieces[id], tok->lengths[id]) >= 0) continue;
        size_t i = tok_hash(tok->pieces[id], tok->lengths[id]) & ix->mask;
        while (ix->slots[i] >= 0) i = (i + 1) & ix->mask;
        ix->slots[i] = id;
    }
}

static void tok_alloc(ds_tokenizer *tok, int vocab_size, int max_token_length)
{
    tok->vocab_size = vocab_size;
    tok->max_token_length = max_token_length;
    tok->pieces = ds_calloc((size_t)vocab_size, sizeof *tok->pieces);
    tok->lengths = ds_calloc((size_t)vocab_size, sizeof *tok->lengths);
    tok->scores = ds_calloc((size_t)vocab_size, sizeof *tok->scores);
    tok->index = NULL;
    tok->hf = NULL;
    tok->bos_id = DS_TOK_BOS;
    tok->eos_id = DS_TOK_EOS;
}

void ds_tokenizer_from_hf(struct ds_tok_hf *hf, ds_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    tok->hf = hf;
    tok->vocab_size = ds_tok_hf_n_ids(hf);
    tok->bos_id = ds_tok_hf_bos(hf);
    tok->eos_id = ds_tok_hf_eos(hf);
}

int ds_tokenizer_load(const char *path, int vocab_size, ds_tokenizer *tok)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ds_err(DS_EXIT_INPUT, "%s: cannot open tokenizer: %s", path, strerror(errno));
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    if (c != '{') return ds_tokenizer_load_llama2c(path, vocab_size, tok);
    ds_tok_files tf;
    int rc = ds_tok_files_read(path, &tf);
    if (!rc) rc = ds_tok_files_load(path, &tf, vocab_size, tok);
    ds_tok_files_free(&tf);
    return rc;
}

void ds_tokenizer_free(ds_tokenizer *tok)
{
    if (!tok) return;
    ds_tok_hf_free(tok->hf);
    ds_tok_files_free(&tok->files);
    if (tok->pieces)
        for (int i = 0; i < tok->vocab_size; i++) free(tok->pieces[i]);
    free(tok->pieces);
    free(tok->lengths);
    free(tok->scores);
    if (tok->index) free(((tok_index *)tok->index)->slots);
    free(tok->index);
    memset(tok, 0, sizeof *tok);
}

int ds_tokenizer_load_llama2c(const char *path, int vocab_size, ds_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    char *data;
    size_t n;
    int rc = ds_read_file(path, &data, &n);
    if (rc) return rc;
    size_t off = 0;
    int32_t maxlen;
    if (n < 4) {
        free(data);
        return ds_err(DS_EXIT_INPUT, "%s: truncated tokenizer file (%zu bytes, no header)", path, n);
    }
    memcpy(&maxlen, data, 4);
    off = 4;
    if (maxlen <= 0 || maxlen > TOK_MAX_PIECE) {
        free(data);
        return ds_err(DS_EXIT_INPUT, "%s: max_token_length %d out of range 1..%d: not a llama2.c tokenizer", path,
                      (int)maxlen, TOK_MAX_PIECE);
    }
    /* First pass: validate and count, so no partial tokenizer is built. */
    int count = 0;
    for (size_t o = off; vocab_size <= 0 ? o < n : count < vocab_size; count++) {
        float score;
        int32_t len;
        if (n - o < 8) {
            free(data);
            if (vocab_size > 0)
                return ds_err(DS_EXIT_INPUT, "%s: token %d: truncated file (expected %d tokens)", path, count,
                              vocab_size);
            return ds_err(DS_EXIT_INPUT, "%s: token %d: truncated file (%zu stray bytes at the end)", path, count,
                          n - o);
        }
        memcpy(&score, data + o, 4);
        memcpy(&len, data + o + 4, 4);
        o += 8;
        if (len < 0 || len > maxlen) {
            free(data);
            return ds_err(DS_EXIT_INPUT, "%s: token %d: length %d out of range 0..%d (max_token_length)", path,
                          count, (int)len, (int)maxlen);
        }
        if (!isfinite(score)) {
            free(data);
            return ds_err(DS_EXIT_INPUT, "%s: token %d: score is not finite", path, count);
        }
        if (n - o < (size_t)len) {
            free(data);
            return ds_err(DS_EXIT_INPUT, "%s: token %d: truncated file (piece of %d bytes, %zu left)", path, count,
                          (int)len, n - o);
        }
        o += (size_t)len;
        if (vocab_size > 0 && count + 1 == vocab_size && o != n) {
            free(data);
            return ds_err(DS_EXIT_INPUT, "%s: %zu trailing bytes after %d tokens (tokenizer of another vocabulary?)",
                          path, n - o, vocab_size);
        }
    }
    if (count < 3) { /* ids 0, 1, 2 are <unk>, BOS and EOS: encode emits them */
        free(data);
        return ds_err(DS_EXIT_INPUT, "%s: %d token(s): a llama2.c tokenizer needs at least <unk>, <s> and </s>", path,
                      count);
    }
    tok_alloc(tok, count, maxlen);
    for (int i = 0; i < count; i++) {
        int32_t len;
        memcpy(&tok->scores[i], data + off, 4);
        memcpy(&len, data + off + 4, 4);
        off += 8;
        tok->lengths[i] = len;
        tok->pieces[i] = ds_malloc((size_t)len + 1);
        memcpy(tok->pieces[i], data + off, (size_t)len);
        tok->pieces[i][len] = 0;
        off += (size_t)len;
    }
    free(data);
    tok_index_build(tok);
    return 0;
}

int ds_tokenizer_from_arrays(int vocab_size, int max_token_length, const char *const *pieces,
                             const int *lengths, const float *scores, ds_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    if (vocab_size <= 0) return ds_err(DS_EXIT_INPUT, "tokenizer: vocab_size %d must be positive", vocab_size);
    if (max_token_length <= 0 || max_token_length > TOK_MAX_PIECE)
        return ds_err(DS_EXIT_INPUT, "tokenizer: max_token_length %d out of range 1..%d", max_token_length,
                      TOK_MAX_PIECE);
    for (int i = 0; i < vocab_size; i++) {
        int len = lengths ? lengths[i] : (int)strnlen(pieces[i], (size_t)TOK_MAX_PIECE + 1);
        if (len < 0 || len > max_token_length)
            return ds_err(DS_EXIT_INPUT, "tokenizer: token %d: length %d out of range 0..%d (max_token_length)", i,
                          len, max_token_length);
        if (!isfinite(scores[i])) return ds_err(DS_EXIT_INPUT, "tokenizer: token %d: score is not finite", i);
    }
    tok_alloc(tok, vocab_size, max_token_length);
    for (int i = 0; i < vocab_size; i++) {
        int len = lengths ? lengths[i] : (int)strlen(pieces[i]);
        tok->lengths[i] = len;
        tok->scores[i] = scores[i];
        tok->pieces[i] = ds_malloc((size_t)len + 1);
        memcpy(tok->pieces[i], pieces[i], (size_t)len);
        tok->pieces[i][len] = 0;
    }
    tok_index_build(tok);
    return 0;
}

/* ---- encoding */

/* A candidate merge of symbols left and right (their ids at push time). */
typedef struct {
    float score;
    int left, right, idl, idr, merged;
} tok_pair;

typedef struct {
    tok_pair *a;
    size_t n, cap;
} tok_heap;

/* Higher score first; on equal scores the leftmost pair (symbol indices
 * follow text order), as run.c's left-to-right strict '>' scan picks. */
static int pair_before(const tok_pair *x, const tok_pair *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static void heap_push(tok_heap *h, tok_pair p)
{
    if (h->n == h->cap) h->a = ds_realloc(h->a, (h->cap = h->cap ? 2 * h->cap : 64) * sizeof *h->a);
    size_t i = h->n++;
    while (i > 0 && pair_before(&p, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = p;
}

static tok_pair heap_pop(tok_heap *h)
{
    tok_pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct {
    int *id, *prev, *next; /* id -1: merged into its left neighbour */
    char *buf;             /* scratch for a concatenated piece */
    tok_heap heap;
} tok_work;

/* Push the pair (l, r) when their concatenated piece text is in the vocabulary. */
static void pair_consider(const ds_tokenizer *tok, tok_work *w, int l, int r)
{
    if (l < 0 || r < 0) return;
    int a = w->id[l], b = w->id[r];
    int la = tok->lengths[a], lb = tok->lengths[b];
    if (la + lb > tok->max_token_length) return;
    memcpy(w->buf, tok->pieces[a], (size_t)la);
    memcpy(w->buf + la, tok->pieces[b], (size_t)lb);
    int m = ds_tokenizer_lookup(tok, w->buf, la + lb);
    if (m < 0) return;
    tok_pair p = {tok->scores[m], l, r, a, b, m};
    heap_push(&w->heap, p);
}

/* Append the symbol(s) for one codepoint's bytes. */
static int emit_chunk(const ds_tokenizer *tok, const char *s, int len, int *id, int n)
{
    int t = ds_tokenizer_lookup(tok, s, len);
    if (t >= 0) {
        id[n++] = t;
        return n;
    }
    for (int i = 0; i < len; i++) {
        int b = DS_TOK_BYTE0 + (unsigned char)s[i];
        id[n++] = b < tok->vocab_size ? b : DS_TOK_UNK;
    }
    return n;
}

static int encode_hf(ds_tokenizer *tok, const char *text, int bos, int eos, int *ids)
{
    int32_t *v;
    size_t n, len = strlen(text);
    if (ds_tok_hf_encode(tok->hf, text, len, bos, &v, &n)) return -1;
    if (n + (eos && tok->eos_id >= 0) > len + 3)
        ds_die("tokenizer: %zu ids for %zu bytes overflow the caller's buffer", n, len);
    for (size_t i = 0; i < n; i++) ids[i] = v[i];
    free(v);
    if (eos && tok->eos_id >= 0) ids[n++] = tok->eos_id;
    return (int)n;
}

int ds_tokenizer_encode(ds_tokenizer *tok, const char *text, int bos, int eos, int *ids)
{
    if (tok->hf) return encode_hf(tok, text, bos, eos, ids);
    size_t tlen = strlen(text);
    int out = 0;
    if (bos) ids[out++] = DS_TOK_BOS;
    if (tlen == 0) {
        if (eos) ids[out++] = DS_TOK_EOS;
        return out;
    }
    tok_work w = {0};
    size_t cap = tlen + 1;
    w.id = ds_malloc(cap * sizeof *w.id);
    w.prev = ds_malloc(cap * sizeof *w.prev);
    w.next = ds_malloc(cap * sizeof *w.next);
    w.buf = ds_malloc(2 * (size_t)tok->max_token_length + 1);

    int n = emit_chunk(tok, " ", 1, w.id, 0); /* the dummy prefix */
    /* Codepoints as run.c groups them: a byte that is not a continuation
     * byte starts a chunk; up to 3 following continuation bytes join it. */
    for (size_t i = 0; i < tlen;) {
        size_t j = i + 1;
        while (j < tlen && j - i < 4 && ((unsigned char)text[j] & 0xC0) == 0x80) j++;
        n = emit_chunk(tok, text + i, (int)(j - i), w.id, n);
        i = j;
    }
    for (int i = 0; i < n; i++) {
        w.prev[i] = i - 1;
        w.next[i] = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; i++) pair_consider(tok, &w, i, i + 1);

    while (w.heap.n) {
        tok_pair p = heap_pop(&w.heap);
        /* Stale entry: a side was merged away, or changed by a merge. */
        if (w.id[p.left] != p.idl || w.id[p.right] != p.idr || w.next[p.left] != p.right) continue;
        w.id[p.left] = p.merged;
        w.id[p.right] = -1;
        int nx = w.next[p.right];
        w.next[p.left] = nx;
        if (nx >= 0) w.prev[nx] = p.left;
        pair_consider(tok, &w, w.prev[p.left], p.left);
        pair_consider(tok, &w, p.left, nx);
    }
    for (int i = 0; i >= 0; i = w.next[i]) ids[out++] = w.id[i];
    if (eos) ids[out++] = DS_TOK_EOS;
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.buf);
    free(w.heap.a);
    return out;
}

/* ---- decoding */

/* "<0xNN>" (exactly, upper- or lower-case hex) -> byte value, else -1. */
static int byte_piece(const char *p, int len)
{
    if (len != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

const char *ds_tokenizer_decode(ds_tokenizer *tok, int prev, int id, int *len)
{
    if (id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->hf) { /* the piece as stored: callers that stream text decode whole sequences instead */
        const char *p = ds_tok_hf_piece(tok->hf, id);
        *len = p ? (int)strlen(p) : 0;
        return p ? p : "";
    }
    const char *p = tok->pieces[id];
    int n = tok->lengths[id];
    if (prev == DS_TOK_BOS && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    int b = byte_piece(p, n);
    if (b >= 0) {
        p = ((tok_index *)tok->index)->bytes + 2 * b;
        n = 1;
    }
    *len = n;
    return p;
}

static char *decode_ids_hf(ds_tokenizer *tok, const int *ids, int n, size_t *len)
{
    int32_t *v = ds_malloc(((size_t)n + 1) * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = ids[i];
    char *text = NULL;
    size_t k = 0;
    int rc = ds_tok_hf_decode(tok->hf, v, (size_t)n, 1, &text, &k);
    free(v);
    if (rc) return NULL;
    if (len) *len = k;
    return text;
}

char *ds_tokenizer_decode_ids(ds_tokenizer *tok, const int *ids, int n, size_t *len)
{
    if (tok->hf) return decode_ids_hf(tok, ids, n, len);
    size_t cap = 64, used = 0;
    char *s = ds_malloc(cap);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            free(s);
            ds_err(DS_EXIT_INPUT, "tokenizer: token %d: id %d out of range 0..%d", i, ids[i], tok->vocab_size - 1);
            return NULL;
        }
        if (ids[i] == DS_TOK_BOS || ids[i] == DS_TOK_EOS) continue;
        int k;
        const char *p = ds_tokenizer_decode(tok, i > 0 ? ids[i - 1] : -1, ids[i], &k);
        if (used + (size_t)k + 1 > cap) {
            while (used + (size_t)k + 1 > cap) cap *= 2;
            s = ds_realloc(s, cap);
        }
        memcpy(s + used, p, (size_t)k);
        used += (size_t)k;
    }
    s[used] = 0;
    if (len) *len = used;
    return s;
}

/* ---- chat templates */

int ds_tokenizer_chat_template(const ds_tokenizer *tok, const char *opt, const char *option, const char **name)
{
    *name = NULL;
    if (!opt || strcmp(opt, "auto") == 0) {
        *name = tok->hf && tok->chat_template[0] ? tok->chat_template : "none";
        return 0;
    }
    static const char *const names[] = {"llama3", "llama2", "mistral", "chatml", "none"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(opt, names[i]) == 0) *name = names[i];
    if (!*name)
        return ds_err(DS_EXIT_USAGE, "%s: expected auto or one of %s, got '%s'", option, ds_chat_names(), opt);
    if (!tok->hf && strcmp(*name, "none") != 0)
        return ds_err(DS_EXIT_INPUT, "%s %s: the model's tokenizer is a llama2.c one (no special-token texts): only none",
                      option, *name);
    return 0;
}

static const char *special_text(const ds_tokenizer *tok, int id)
{
    const char *p = id >= 0 ? ds_tok_hf_piece(tok->hf, id) : NULL;
    return p ? p : "";
}

int ds_tokenizer_encode_chat(ds_tokenizer *tok, const char *tmpl, const ds_chat_msg *msgs, int n, int add_special,
                             int **ids, int *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    char *text;
    const char *bos = tok->hf ? special_text(tok, tok->bos_id) : "", *eos = tok->hf ? special_text(tok, tok->eos_id) : "";
    int rc = ds_chat_render(tmpl, msgs, n, 1, bos, eos, &text);
    if (rc) return rc;
    int *v = ds_malloc((strlen(text) + 3) * sizeof *v);
    int k = ds_tokenizer_encode(tok, text, ds_chat_encode_plain(tmpl) ? 0 : add_special, 0, v);
    free(text);
    if (k < 0) {
        free(v);
        return DS_EXIT_INPUT;
    }
    *ids = v;
    *n_ids = k;
    return 0;
}

int ds_tokenizer_stop_ids(const ds_tokenizer *tok, int *stop)
{
    int n = 0;
    if (tok->eos_id >= 0) stop[n++] = tok->eos_id;
    if (tok->bos_id >= 0 && tok->bos_id != tok->eos_id) stop[n++] = tok->bos_id;
    static const char *const turn_end[] = {"<|eot_id|>", "<|im_end|>"};
    for (int i = 0; tok->hf && i < 2; i++) {
        int id = ds_tok_hf_id(tok->hf, turn_end[i]);
        if (id >= 0 && ds_tok_hf_is_special(tok->hf, id) && id != tok->eos_id && id != tok->bos_id) stop[n++] = id;
    }
    return n;
}
