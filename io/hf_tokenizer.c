/* Hugging Face tokenizer.json: load, encode, decode (io/hf_tokenizer.h). */
#include "config.h"
#include "io/hf_tokenizer.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/bpe.h"
#include "src/ds.h"

enum { NORM_PREPEND, NORM_REPLACE };
typedef struct { int kind; char *a, *b; } norm_step; /* prepend a | replace a -> b */
enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_BYTELEVEL };
typedef struct { int kind; char *a, *b; int start, stop; } dec_step;
typedef struct { char *s; size_t len; int32_t id; int special, lstrip, rstrip; } added_tok;

struct ds_tok_hf {
    ds_tok_hf_kind kind;
    int n_ids;
    char **piece;            /* id -> piece (NULL: none) */
    size_t *piece_len;
    int32_t *map;            /* piece -> id, open addressing, -1 empty */
    size_t map_cap;
    ds_bpe_pairs merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    int32_t byte_fb[256];    /* <0xNN> pieces, -1 when missing */
    int32_t byte_lv[256];    /* ByteLevel: the piece of each byte's character */
    uint32_t lv_char[256];   /* byte -> character */
    norm_step *norm;
    int n_norm;
    pcre2_code *split;       /* Split pre-tokenizer (Isolated), or NULL */
    added_tok *added;
    int n_added;
    char *is_special;        /* per id */
    int32_t *prefix, *suffix;
    int n_prefix, n_suffix;
    dec_step *dec;
    int n_dec;
    int cleanup;
    int32_t bos, eos;        /* tokenizer_config.json's bos_token, eos_token; -1: none */
    int jit;                 /* split is JIT-compiled */
    int spm_split;           /* the SentencePiece kind merges chunk by chunk (spm_chunks) */
    uint32_t *glue;          /* sorted: characters a merge joins to a following "▁" */
    size_t n_glue;
    unsigned char added_first[256];   /* some added token starts with this byte */
    int added_start[257], *added_order; /* added tokens by first byte, longest first */
    struct enc_state *enc;   /* encoding scratch and word cache (encode is not reentrant) */
    int plain;               /* ds_tok_hf_set_plain */
    int llama3_split;        /* split is Llama 3's pattern: llama3_ascii_match applies */
};

static void enc_init(ds_tok_hf *t);
static void enc_free(struct enc_state *e);

/* ---- UTF-8 ---- */

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 63)); o[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 63));
    o[2] = (char)(0x80 | ((c >> 6) & 63)); o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* Length of the valid UTF-8 sequence at S (at most N bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return k;
}

static uint32_t utf8_cp(const unsigned char *s, size_t k)
{
    if (k == 1) return s[0];
    uint32_t c = s[0] & (0x7F >> k);
    for (size_t i = 1; i < k; i++) c = c << 6 | (s[i] & 63);
    return c;
}

/* growable byte buffer */
typedef struct { char *p; size_t n, cap; } buf;
static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1) + 64;
        b->p = ds_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Append s[0..n) to o with every occurrence of a (not empty) replaced by b,
 * left to right without overlaps: the normalizer's and the decoder's Replace
 * and the reference's clean-up all do this. */
/* The first A (LA >= 1 bytes) in S[0..N), or NULL: memchr for its first
 * byte (glibc's memmem costs more per call for the short needles here). */
static const char *find(const char *s, size_t n, const char *a, size_t la)
{
    for (const char *end = s + n; (size_t)(end - s) >= la;) {
        const char *q = memchr(s, a[0], (size_t)(end - s) - la + 1);
        if (!q) return NULL;
        size_t k = 1;
        while (k < la && q[k] == a[k]) k++;
        if (k == la) return q;
        s = q + 1;
    }
    return NULL;
}

static void buf_replace(buf *o, const char *s, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    buf_add(o, "", 0);
    for (size_t j = 0; j < n;) {
        const char *q = find(s + j, n - j, a, la);
        size_t k = q ? (size_t)(q - s) : n;
        buf_add(o, s + j, k - j);
        if (!q) break;
        buf_add(o, b, lb);
        j = k + la;
    }
}

/* Bytes -> text, U+FFFD for each maximal invalid subsequence (WHATWG). */
static void utf8_lossy(buf *o, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_len(s + i, n - i);
        if (k) { buf_add(o, s + i, k); i += k; continue; }
        /* skip the longest prefix of a valid sequence, at least one byte */
        size_t skip = 1;
        unsigned c = s[i], lo = 0x80, hi = 0xBF, need = 0;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        for (unsigned j = 0; j < need && i + skip < n; j++) {
            unsigned d = s[i + skip];
            if (d < lo || d > hi) break;
            lo = 0x80, hi = 0xBF;
            skip++;
        }
        buf_add(o, "\xEF\xBF\xBD", 3);
        i += skip;
    }
}

/* ---- piece -> id map ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xff51afd7ed558ccdULL), v;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, s + i, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    if (i < n) {
        v = 0;
        for (size_t j = 0; i + j < n; j++) v |= (uint64_t)(unsigned char)s[i + j] << (8 * j);
        h = (h ^ v) * 0x94d049bb133111ebULL;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h ? h : 1; /* never 0: the word cache's empty slot */
}

static int32_t lookup(const ds_tok_hf *t, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & (t->map_cap - 1);
    for (; t->map[i] >= 0; i = (i + 1) & (t->map_cap - 1)) {
        int32_t id = t->map[i];
        if (t->piece_len[id] == n && memcmp(t->piece[id], s, n) == 0) return id;
    }
    return -1;
}

static void map_insert(ds_tok_hf *t, int32_t id)
{
    size_t i = hash_bytes(t->piece[id], t->piece_len[id]) & (t->map_cap - 1);
    while (t->map[i] >= 0) i = (i + 1) & (t->map_cap - 1);
    t->map[i] = id;
}

/* ---- loading ---- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves,
 * the others for 256, 257, ... in byte order. */
static void byte_level_map(uint32_t out[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        out[b] = keep ? (uint32_t)b : next++;
    }
}

static int load_vocab(ds_tok_hf *t, const char *path, json_t *model, json_t *added)
{
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return ds_err(DS_EXIT_INPUT, "%s: model.vocab is not an object", path);
    int max = -1;
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= (1 << 24)) return ds_err(DS_EXIT_INPUT, "%s: vocab piece '%s' has a bad id", path, k);
        if (id > max) max = (int)id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *idv = json_object_get(v, "id");
        if (!json_is_integer(idv) || !jstr(v, "content") || json_integer_value(idv) < 0 ||
            json_integer_value(idv) >= (1 << 24))
            return ds_err(DS_EXIT_INPUT, "%s: added token %zu has no content or a bad id", path, i);
        if (json_integer_value(idv) > max) max = (int)json_integer_value(idv);
    }
    t->n_ids = max + 1;
    t->piece = ds_calloc((size_t)t->n_ids, sizeof *t->piece);
    t->piece_len = ds_calloc((size_t)t->n_ids, sizeof *t->piece_len);
    json_object_foreach(vocab, k, v) {
        int id = (int)json_integer_value(v);
        if (t->piece[id]) return ds_err(DS_EXIT_INPUT, "%s: vocab id %d is given twice", path, id);
        t->piece[id] = ds_strdup(k);
        t->piece_len[id] = strlen(k);
    }
    t->n_added = (int)json_array_size(added);
    t->added = ds_calloc((size_t)t->n_added + 1, sizeof *t->added);
    t->is_special = ds_calloc((size_t)t->n_ids, 1);
    json_array_foreach(added, i, v) {
        added_tok *a = &t->added[i];
        a->id = (int32_t)json_integer_value(json_object_get(v, "id"));
        a->s = ds_strdup(jstr(v, "content"));
        a->len = strlen(a->s);
        if (!a->len) return ds_err(DS_EXIT_INPUT, "%s: added token %zu is empty", path, i);
        a->special = json_is_true(json_object_get(v, "special"));
        a->lstrip = json_is_true(json_object_get(v, "lstrip"));
        a->rstrip = json_is_true(json_object_get(v, "rstrip"));
        t->is_special[a->id] = (char)a->special;
        if (!t->piece[a->id]) {
            t->piece[a->id] = ds_strdup(a->s);
            t->piece_len[a->id] = a->len;
        } else if (strcmp(t->piece[a->id], a->s) != 0) {
            return ds_err(DS_EXIT_INPUT, "%s: added token '%s' has id %d, which is the piece '%s'", path, a->s,
                          a->id, t->piece[a->id]);
        }
    }
    t->map_cap = 16;
    while (t->map_cap < 2 * (size_t)t->n_ids) t->map_cap *= 2;
    t->map = ds_malloc(t->map_cap * sizeof *t->map);
    memset(t->map, 0xff, t->map_cap * sizeof *t->map);
    for (int id = 0; id < t->n_ids; id++)
        if (t->piece[id] && lookup(t, t->piece[id], t->piece_len[id]) < 0) map_insert(t, id);
    return 0;
}

static int load_merges(ds_tok_hf *t, const char *path, json_t *model)
{
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) return ds_err(DS_EXIT_INPUT, "%s: model.merges is not a list", path);
    ds_bpe_pairs_init(&t->merges, json_array_size(merges));
    size_t i;
    json_t *m;
    buf cat = {0};
    int rc = 0;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t la, lb;
        const char *sp;
        if (json_is_string(m) && (sp = strchr(json_string_value(m), ' ')) && !strchr(sp + 1, ' ')) {
            a = json_string_value(m);
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = strlen(a);
            lb = strlen(b);
        } else {
            rc = ds_err(DS_EXIT_INPUT, "%s: merge %zu is not \"LEFT RIGHT\"", path, i);
            break;
        }
        cat.n = 0;
        buf_add(&cat, a, la);
        int32_t ia = lookup(t, a, la), ib = lookup(t, b, lb), im;
        buf_add(&cat, b, lb);
        im = lookup(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || im < 0 || !la || !lb) {
            const char *what = ia < 0 ? "left" : ib < 0 ? "right" : "merged";
            rc = ds_err(DS_EXIT_INPUT, "%s: merge %zu ('%.*s' '%.*s'): its %s piece is not in the vocabulary",
                        path, i, (int)la, a, (int)lb, b, what);
            break;
        }
        if (ds_bpe_pairs_put(&t->merges, ia, ib, (int32_t)i, im)) {
            rc = ds_err(DS_EXIT_INPUT, "%s: merge %zu ('%.*s' '%.*s') is given twice", path, i, (int)la, a,
                        (int)lb, b);
            break;
        }
    }
    free(cat.p);
    return rc;
}

static int load_normalizer(ds_tok_hf *t, const char *path, json_t *n)
{
    if (json_is_null(n) || !n) return 0;
    json_t *one = n, *list = NULL;
    const char *type = jstr(n, "type");
    if (type && !strcmp(type, "Sequence")) list = json_object_get(n, "normalizers");
    size_t cnt = list ? json_array_size(list) : 1;
    t->norm = ds_calloc(cnt + 1, sizeof *t->norm);
    for (size_t i = 0; i < cnt; i++) {
        if (list) one = json_array_get(list, i);
        type = jstr(one, "type");
        norm_step *s = &t->norm[t->n_norm];
        if (type && !strcmp(type, "Prepend") && jstr(one, "prepend")) {
            s->kind = NORM_PREPEND;
            s->a = ds_strdup(jstr(one, "prepend"));
        } else if (type && !strcmp(type, "Replace") && jstr(json_object_get(one, "pattern"), "String") &&
                   *jstr(json_object_get(one, "pattern"), "String") && jstr(one, "content")) {
            s->kind = NORM_REPLACE;
            s->a = ds_strdup(jstr(json_object_get(one, "pattern"), "String"));
            s->b = ds_strdup(jstr(one, "content"));
        } else {
            return ds_err(DS_EXIT_INPUT, "%s: normalizer %s is not supported (Prepend, Replace of a string)",
                          path, type ? type : "?");
        }
        t->n_norm++;
    }
    return 0;
}

/* The split pattern of Llama 3 (and tiktoken's cl100k_base), as its
 * tokenizer.json gives it. */
static const char llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int load_pretok(ds_tok_hf *t, const char *path, json_t *p)
{
    if (json_is_null(p) || !p) return 0;
    json_t *one = p, *list = NULL;
    const char *type = jstr(p, "type");
    if (type && !strcmp(type, "Sequence")) list = json_object_get(p, "pretokenizers");
    size_t cnt = list ? json_array_size(list) : 1;
    for (size_t i = 0; i < cnt; i++) {
        if (list) one = json_array_get(list, i);
        type = jstr(one, "type");
        const char *re = jstr(json_object_get(one, "pattern"), "Regex");
        const char *beh = jstr(one, "behavior");
        if (type && !strcmp(type, "Split") && re && beh && !strcmp(beh, "Isolated") && !t->split &&
            !json_is_true(json_object_get(one, "invert"))) {
            /* the reference's rewrite of the case-insensitive contractions */
            static const char ci[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
            static const char ex[] = "(?:'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";
            buf pat = {0};
            for (const char *q = re; *q;) {
                if (!strncmp(q, ci, sizeof ci - 1)) {
                    buf_add(&pat, ex, sizeof ex - 1);
                    q += sizeof ci - 1;
                } else {
                    buf_add(&pat, q++, 1);
                }
            }
            t->llama3_split = !strcmp(re, llama3_pattern);
            int err;
            PCRE2_SIZE off;
            t->split = pcre2_compile((PCRE2_SPTR)pat.p, pat.n, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err,
                                     &off, NULL);
            free(pat.p);
            if (!t->split) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(err, msg, sizeof msg);
                return ds_err(DS_EXIT_INPUT, "%s: split regex: %s at offset %zu", path, (char *)msg, (size_t)off);
            }
            t->jit = pcre2_jit_compile(t->split, PCRE2_JIT_COMPLETE) == 0; /* else the interpreter */
        } else if (type && !strcmp(type, "ByteLevel") && !json_is_true(json_object_get(one, "use_regex")) &&
                   !json_is_true(json_object_get(one, "add_prefix_space"))) {
            t->kind = DS_TOK_HF_BYTELEVEL;
        } else {
            return ds_err(DS_EXIT_INPUT,
                          "%s: pre-tokenizer %s is not supported (Split with a regex, Isolated; ByteLevel without "
                          "its regex or prefix space)",
                          path, type ? type : "?");
        }
    }
    return 0;
}

static int load_post(ds_tok_hf *t, const char *path, json_t *p)
{
    const char *type = p ? jstr(p, "type") : NULL;
    if (!type || !strcmp(type, "ByteLevel")) return 0;
    if (strcmp(type, "TemplateProcessing") != 0)
        return ds_err(DS_EXIT_INPUT, "%s: post-processor %s is not supported (TemplateProcessing, ByteLevel)", path,
                      type);
    json_t *single = json_object_get(p, "single"), *sp = json_object_get(p, "special_tokens"), *e;
    size_t i, total = 0;
    json_array_foreach(single, i, e) {
        json_t *s = json_object_get(e, "SpecialToken");
        if (s) total += json_array_size(json_object_get(json_object_get(sp, jstr(s, "id") ? jstr(s, "id") : ""), "ids"));
    }
    t->prefix = ds_calloc(total + 1, sizeof *t->prefix);
    t->suffix = ds_calloc(total + 1, sizeof *t->suffix);
    int seen_a = 0;
    json_array_foreach(single, i, e) {
        json_t *s = json_object_get(e, "SpecialToken");
        if (json_object_get(e, "Sequence")) {
            seen_a = 1;
            continue;
        }
        json_t *ids = json_object_get(json_object_get(sp, s && jstr(s, "id") ? jstr(s, "id") : ""), "ids"), *idv;
        if (!json_is_array(ids))
            return ds_err(DS_EXIT_INPUT, "%s: post-processor: special token %zu of the template is not defined", path,
                          i);
        size_t j;
        json_array_foreach(ids, j, idv) {
            json_int_t id = json_integer_value(idv);
            if (!json_is_integer(idv) || id < 0 || id >= t->n_ids || !t->piece[id])
                return ds_err(DS_EXIT_INPUT, "%s: post-processor: special token id %lld is no piece", path,
                              (long long)id);
            if (seen_a) t->suffix[t->n_suffix++] = (int32_t)id;
            else t->prefix[t->n_prefix++] = (int32_t)id;
        }
    }
    return 0;
}

static int load_decoder(ds_tok_hf *t, const char *path, json_t *d)
{
    if (!d || json_is_null(d)) return 0;
    json_t *one = d, *list = NULL;
    const char *type = jstr(d, "type");
    if (type && !strcmp(type, "Sequence")) list = json_object_get(d, "decoders");
    size_t cnt = list ? json_array_size(list) : 1;
    t->dec = ds_calloc(cnt + 1, sizeof *t->dec);
    for (size_t i = 0; i < cnt; i++) {
        if (list) one = json_array_get(list, i);
        type = jstr(one, "type");
        dec_step *s = &t->dec[t->n_dec];
        const char *pat = jstr(json_object_get(one, "pattern"), "String");
        if (type && !strcmp(type, "Replace") && pat && *pat && jstr(one, "content")) {
            s->kind = DEC_REPLACE;
            s->a = ds_strdup(pat);
            s->b = ds_strdup(jstr(one, "content"));
        } else if (type && !strcmp(type, "ByteFallback")) {
            s->kind = DEC_BYTEFALLBACK;
        } else if (type && !strcmp(type, "Fuse")) {
            s->kind = DEC_FUSE;
        } else if (type && !strcmp(type, "Strip") && jstr(one, "content") && strlen(jstr(one, "content")) == 1) {
            s->kind = DEC_STRIP;
            s->a = ds_strdup(jstr(one, "content"));
            s->start = (int)json_integer_value(json_object_get(one, "start"));
            s->stop = (int)json_integer_value(json_object_get(one, "stop"));
        } else if (type && !strcmp(type, "ByteLevel")) {
            s->kind = DEC_BYTELEVEL;
        } else {
            return ds_err(DS_EXIT_INPUT,
                          "%s: decoder %s is not supported (Replace, ByteFallback, Fuse, Strip, ByteLevel)", path,
                          type ? type : "?");
        }
        t->n_dec++;
    }
    return 0;
}

/* A bos_token / eos_token of tokenizer_config.json: a string or an
 * AddedToken object {"content": ...}; its id, or -1. */
static int32_t config_token(const ds_tok_hf *t, json_t *c, const char *key)
{
    json_t *v = json_object_get(c, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return lookup(t, json_string_value(v), json_string_length(v));
}

/* tokenizer_config.json's text (may be NULL): clean_up_tokenization_spaces
 * (default true), bos_token, eos_token. A config that is not JSON is ignored
 * here (import checks it). */
static void load_config(ds_tok_hf *t, const char *text, size_t len)
{
    t->cleanup = 1;
    t->bos = t->eos = -1;
    if (!text) return;
    json_t *c = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, NULL); /* model_max_length overflows */
    json_t *v = c ? json_object_get(c, "clean_up_tokenization_spaces") : NULL;
    if (json_is_boolean(v)) t->cleanup = json_is_true(v);
    if (c) t->bos = config_token(t, c, "bos_token"), t->eos = config_token(t, c, "eos_token");
    json_decref(c);
}

static int load_model(ds_tok_hf *t, const char *path, json_t *root)
{
    json_t *model = json_object_get(root, "model");
    const char *type = jstr(model, "type");
    if (!json_is_object(model)) return ds_err(DS_EXIT_INPUT, "%s: no model", path);
    if (!type || strcmp(type, "BPE") != 0)
        return ds_err(DS_EXIT_INPUT, "%s: model type %s is not supported (BPE only)", path, type ? type : "(none)");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) return ds_err(DS_EXIT_INPUT, "%s: added_tokens is not a list", path);
    int rc = load_vocab(t, path, model, added);
    if (!rc) rc = load_merges(t, path, model);
    if (rc) return rc;
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const char *unk = jstr(model, "unk_token");
    t->unk_id = unk ? lookup(t, unk, strlen(unk)) : -1;
    if (unk && t->unk_id < 0) return ds_err(DS_EXIT_INPUT, "%s: unk_token '%s' is not in the vocabulary", path, unk);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->byte_fb[b] = lookup(t, s, 6);
    }
    return 0;
}

int ds_tok_hf_load_text(const char *path, const char *json, size_t len, const char *config, size_t config_len,
                        ds_tok_hf **out)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) return ds_err(DS_EXIT_INPUT, "%s: %s (line %d)", path, je.text, je.line);
    ds_tok_hf *t = ds_calloc(1, sizeof *t);
    t->kind = DS_TOK_HF_SPM;
    int rc = json_is_object(root) ? 0 : ds_err(DS_EXIT_INPUT, "%s: not a JSON object", path);
    if (!rc) rc = load_model(t, path, root);
    if (!rc) rc = load_normalizer(t, path, json_object_get(root, "normalizer"));
    if (!rc) rc = load_pretok(t, path, json_object_get(root, "pre_tokenizer"));
    if (!rc) rc = load_post(t, path, json_object_get(root, "post_processor"));
    if (!rc) rc = load_decoder(t, path, json_object_get(root, "decoder"));
    if (!rc && t->kind == DS_TOK_HF_BYTELEVEL) {
        byte_level_map(t->lv_char);
        for (int b = 0; b < 256 && !rc; b++) {
            char s[4];
            t->byte_lv[b] = lookup(t, s, put_utf8(s, t->lv_char[b]));
            if (t->byte_lv[b] < 0)
                rc = ds_err(DS_EXIT_INPUT, "%s: byte-level vocabulary lacks the piece of byte 0x%02X", path, b);
        }
    }
    if (!rc && t->kind == DS_TOK_HF_SPM && t->split)
        rc = ds_err(DS_EXIT_INPUT, "%s: a Split pre-tokenizer without ByteLevel is not supported", path);
    json_decref(root);
    if (rc) {
        ds_tok_hf_free(t);
        return rc;
    }
    load_config(t, config, config_len);
    enc_init(t);
    *out = t;
    return 0;
}

/* The whole of a file (NUL-terminated), or NULL with errno set. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *s = ds_malloc(cap + 1);
    while ((k = fread(s + n, 1, cap - n, f)) > 0)
        if ((n += k) == cap) s = ds_realloc(s, (cap *= 2) + 1);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}

char *ds_tok_hf_config_beside(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *cfg = ds_malloc(dir + 32);
    memcpy(cfg, path, dir);
    strcpy(cfg + dir, "tokenizer_config.json");
    return cfg;
}

int ds_tok_hf_load(const char *path, ds_tok_hf **out)
{
    *out = NULL;
    size_t len = 0, clen = 0;
    char *text = slurp(path, &len);
    if (!text) return ds_err(DS_EXIT_INPUT, "%s: cannot read: %s", path, strerror(errno));
    char *cpath = ds_tok_hf_config_beside(path);
    char *config = slurp(cpath, &clen);
    free(cpath);
    int rc = ds_tok_hf_load_text(path, text, len, config, clen, out);
    free(text);
    free(config);
    return rc;
}

int ds_tok_hf_bos(const ds_tok_hf *t) { return t->bos; }
int ds_tok_hf_eos(const ds_tok_hf *t) { return t->eos; }
int ds_tok_hf_is_special(const ds_tok_hf *t, int id) { return id >= 0 && id < t->n_ids && t->is_special[id]; }

void ds_tok_hf_free(ds_tok_hf *t)
{
    if (!t) return;
    for (int i = 0; t->piece && i < t->n_ids; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->map);
    ds_bpe_pairs_free(&t->merges);
    for (int i = 0; i < t->n_norm; i++) free(t->norm[i].a), free(t->norm[i].b);
    free(t->norm);
    if (t->split) pcre2_code_free(t->split);
    for (int i = 0; t->added && i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    free(t->is_special);
    free(t->prefix);
    free(t->suffix);
    for (int i = 0; i < t->n_dec; i++) free(t->dec[i].a), free(t->dec[i].b);
    free(t->dec);
    free(t->glue);
    free(t->added_order);
    enc_free(t->enc);
    free(t);
}

ds_tok_hf_kind ds_tok_hf_kind_of(const ds_tok_hf *t) { return t->kind; }
int ds_tok_hf_n_ids(const ds_tok_hf *t) { return t->n_ids; }
int ds_tok_hf_id(const ds_tok_hf *t, const char *s) { return lookup(t, s, strlen(s)); }
const char *ds_tok_hf_piece(const ds_tok_hf *t, int id) { return id >= 0 && id < t->n_ids ? t->piece[id] : NULL; }

/* ---- encoding ---- */

typedef struct {
    int32_t *p;
    size_t n, cap;
} ids_vec;

typedef struct cache_slot cache_slot;
typedef struct enc_state {
    ids_vec sym, out;  /* the word's symbols; the ids so far */
    buf norm, tmp;     /* normalized section; scratch */
    ds_bpe_work work;
    pcre2_match_data *md;
    cache_slot *slot;  /* the word cache */
    size_t slot_cap, n_cached;
    buf keys;
    ids_vec cids;
} enc_state;

static void ids_add(ids_vec *v, int32_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->p = ds_realloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = id;
}

static void ids_add_n(ids_vec *v, const int32_t *p, size_t n)
{
    if (!n) return;
    if (v->n + n > v->cap) {
        v->cap = 2 * (v->n + n) + 256;
        v->p = ds_realloc(v->p, v->cap * sizeof *v->p);
    }
    memcpy(v->p + v->n, p, n * sizeof *p);
    v->n += n;
}

/* The word cache (as Hugging Face tokenizers keeps one): a pre-token's bytes
 * -> its ids, for pre-tokens of at most CACHE_WORD bytes; emptied when it
 * holds CACHE_SLOTS / 2 words. The table starts small and doubles at half
 * full (the words of a text stay in few cache lines). A key of up to 16 bytes is kept in its slot
 * (zero-padded), a longer one in e->keys; one id in the slot, more in e->cids. */
enum { CACHE_SLOTS = 1 << 16, CACHE_FIRST = 1 << 10, CACHE_WORD = 64 };
struct cache_slot {
    uint64_t k[2]; /* the key's bytes, or k[0]: its offset in e->keys */
    uint64_t h;    /* 0: empty */
    int32_t ids;   /* the id (nids 1) or the offset in e->cids */
    uint16_t klen, nids;
};
typedef struct { uint64_t k[2], h; } cache_key;

/* Bytes S[0..N) (N <= 8) as a little-endian number, zero-padded: two
 * overlapping loads, the same bytes where they overlap; no byte read twice
 * past S + N. */
static uint64_t load_le(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 4) {
        const unsigned char *v = u + n - 4;
        uint64_t a = (uint64_t)u[0] | (uint64_t)u[1] << 8 | (uint64_t)u[2] << 16 | (uint64_t)u[3] << 24;
        uint64_t b = (uint64_t)v[0] | (uint64_t)v[1] << 8 | (uint64_t)v[2] << 16 | (uint64_t)v[3] << 24;
        return a | b << (8 * (n - 4));
    }
    if (!n) return 0;
    return (uint64_t)u[0] | (uint64_t)u[n / 2] << (8 * (n / 2)) | (uint64_t)u[n - 1] << (8 * (n - 1));
}

static cache_key cache_key_of(const char *s, size_t n)
{
    cache_key c = {{0, 0}, 0};
    if (n <= 16) {
        c.k[0] = load_le(s, n < 8 ? n : 8);
        c.k[1] = n > 8 ? load_le(s + 8, n - 8) : 0;
        uint64_t h = (c.k[0] ^ n) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        h = (h ^ c.k[1]) * 0x94d049bb133111ebULL;
        h ^= h >> 29;
        c.h = h ? h : 1;
    } else {
        c.h = hash_bytes(s, n);
    }
    return c;
}

static void cache_clear(enc_state *e)
{
    memset(e->slot, 0, e->slot_cap * sizeof *e->slot);
    e->n_cached = 0;
    e->keys.n = 0;
    e->cids.n = 0;
}

static const cache_slot *cache_get(const enc_state *e, const cache_key *key, const char *s, size_t n)
{
    size_t mask = e->slot_cap - 1;
    for (size_t i = key->h & mask;; i = (i + 1) & mask) {
        const cache_slot *c = &e->slot[i];
        if (!c->h) return NULL;
        if (c->h != key->h || c->klen != n) continue;
        if (n <= 16 ? c->k[0] == key->k[0] && c->k[1] == key->k[1] : !memcmp(e->keys.p + c->k[0], s, n)) return c;
    }
}

static void cache_put(enc_state *e, const cache_key *key, const char *s, size_t n, const int32_t *ids, size_t m)
{
    if (m > 0xffff) return;
    if (e->n_cached >= e->slot_cap / 2) {
        if (e->slot_cap < CACHE_SLOTS) {
            cache_slot *old = e->slot;
            size_t cap = e->slot_cap;
            e->slot_cap *= 2;
            e->slot = ds_calloc(e->slot_cap, sizeof *e->slot);
            for (size_t j = 0; j < cap; j++) {
                if (!old[j].h) continue;
                size_t i = old[j].h & (e->slot_cap - 1);
                while (e->slot[i].h) i = (i + 1) & (e->slot_cap - 1);
                e->slot[i] = old[j];
            }
            free(old);
        } else {
            cache_clear(e);
        }
    }
    size_t mask = e->slot_cap - 1, i = key->h & mask;
    while (e->slot[i].h) i = (i + 1) & mask;
    cache_slot *c = &e->slot[i];
    *c = (cache_slot){{key->k[0], key->k[1]}, key->h, ids[0], (uint16_t)n, (uint16_t)m};
    if (n > 16) {
        c->k[0] = e->keys.n;
        buf_add(&e->keys, s, n);
    }
    if (m > 1) {
        c->ids = (int32_t)e->cids.n;
        ids_add_n(&e->cids, ids, m);
    }
    e->n_cached++;
}

/* One pre-token S (N bytes) through the model, merged from scratch: append
 * its ids to OUT; an unknown character fuses with an unknown one before it
 * (fuse_unk) only within the ids from BASE on. */
static void model_merge(const ds_tok_hf *t, enc_state *e, const char *s, size_t n, ids_vec *out, size_t base)
{
    const unsigned char *u = (const unsigned char *)s;
    e->sym.n = 0;
    if (t->kind == DS_TOK_HF_BYTELEVEL) {
        e->tmp.n = 0;
        for (size_t i = 0; i < n; i++) {
            char c[4];
            buf_add(&e->tmp, c, put_utf8(c, t->lv_char[u[i]]));
            ids_add(&e->sym, t->byte_lv[u[i]]);
        }
        int32_t whole;
        if (t->ignore_merges && (whole = lookup(t, e->tmp.p, e->tmp.n)) >= 0) {
            ids_add(out, whole);
            return;
        }
    } else {
        for (size_t i = 0; i < n;) {
            size_t k = utf8_len(u + i, n - i);
            int32_t id = lookup(t, s + i, k);
            ids_add(&e->sym, id >= 0 ? id : -1 - (int32_t)i); /* negative: the character at byte i */
            i += k;
        }
        if (t->ignore_merges) {
            int32_t whole = lookup(t, s, n);
            if (whole >= 0) {
                ids_add(out, whole);
                return;
            }
        }
    }
    size_t m = ds_bpe_merge(&t->merges, e->sym.p, e->sym.n, &e->work);
    for (size_t j = 0; j < m; j++) {
        int32_t id = e->sym.p[j];
        if (id >= 0) {
            ids_add(out, id);
            continue;
        }
        size_t at = (size_t)(-1 - id), k = utf8_len(u + at, n - at), ok = t->byte_fallback;
        for (size_t b = 0; b < k && ok; b++) ok = t->byte_fb[u[at + b]] >= 0;
        if (ok) {
            for (size_t b = 0; b < k; b++) ids_add(out, t->byte_fb[u[at + b]]);
        } else if (t->unk_id >= 0 && !(t->fuse_unk && out->n > base && out->p[out->n - 1] == t->unk_id)) {
            ids_add(out, t->unk_id); /* without an unk_token the character is dropped */
        }
    }
}

/* One pre-token through the model, by the word cache: append its ids to OUT.
 * FUSE_PREV: the ids before are of the same word of the reference (the
 * SentencePiece kind's chunks), so a leading unknown fuses with them. */
static void model_word(const ds_tok_hf *t, enc_state *e, const char *s, size_t n, ids_vec *out, int fuse_prev)
{
    size_t from = out->n;
    if (n <= CACHE_WORD && !t->plain) {
        cache_key key = cache_key_of(s, n);
        const cache_slot *c = cache_get(e, &key, s, n);
        if (c && c->nids == 1) {
            ids_add(out, c->ids);
        } else if (c) {
            ids_add_n(out, e->cids.p + c->ids, c->nids);
        } else {
            model_merge(t, e, s, n, out, from);
            if (out->n > from) cache_put(e, &key, s, n, out->p + from, out->n - from);
        }
    } else {
        model_merge(t, e, s, n, out, from);
    }
    /* fuse_unk across the chunks of one word */
    if (fuse_prev && t->fuse_unk && t->unk_id >= 0 && from > 0 && out->n > from && out->p[from] == t->unk_id &&
        out->p[from - 1] == t->unk_id) {
        memmove(out->p + from, out->p + from + 1, (out->n - from - 1) * sizeof *out->p);
        out->n--;
    }
}

static void normalize(const ds_tok_hf *t, enc_state *e, const char *s, size_t n)
{
    e->norm.n = 0;
    buf_add(&e->norm, s, n);
    for (int i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        e->tmp.n = 0;
        if (st->kind == NORM_PREPEND) {
            buf_add(&e->tmp, st->a, strlen(st->a));
            buf_add(&e->tmp, e->norm.p, e->norm.n);
        } else {
            buf_replace(&e->tmp, e->norm.p, e->norm.n, st->a, st->b);
        }
        buf tmp = e->norm;
        e->norm = e->tmp;
        e->tmp = tmp;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The SentencePiece kind has no pre-tokenizer: the reference merges a whole
 * section as one word. A merge joins a left symbol ending in some character C
 * and a right symbol starting with "▁" only when the merges list has such a
 * pair; t->glue lists every such C (load_spm_split). Before any other "▁" no
 * merge can ever cross, the merges on either side never interact, and the
 * section is merged chunk by chunk (each through the word cache): the same
 * ids as one merge of the whole. */
static void spm_chunks(const ds_tok_hf *t, enc_state *e, const char *p, size_t len, ids_vec *out)
{
    static const char sp[] = "\xe2\x96\x81";
    size_t start = 0;
    int first = 1;
    for (size_t i = 1; i + 3 <= len;) {
        const char *q = find(p + i, len - i, sp, 3);
        if (!q) break;
        i = (size_t)(q - p);
        size_t j = i - 1;
        while (j > start && ((unsigned char)p[j] & 0xC0) == 0x80) j--;
        uint32_t c = utf8_cp((const unsigned char *)p + j, i - j);
        if (i > start && !bsearch(&c, t->glue, t->n_glue, sizeof c, cmp_u32)) {
            model_word(t, e, p + start, i - start, out, !first);
            first = 0;
            start = i;
        }
        i += 3;
    }
    model_word(t, e, p + start, len - start, out, !first);
}

static int ascii_letter(unsigned c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int ascii_digit(unsigned c) { return c >= '0' && c <= '9'; }

/* Where Llama 3's split pattern, searching from P[AT], ends its match when
 * the answer shows in ASCII alone, else 0 (ask PCRE2). The two alternatives
 * that cover most text: [^\r\n\p{L}\p{N}]?\p{L}+ (an optional ASCII
 * character that is none of CR, LF, letter, digit or the apostrophe of the
 * first alternative, then ASCII letters up to an ASCII non-letter) and
 * \p{N}{1,3} (ASCII digits; three, or up to an ASCII non-digit). Every
 * earlier alternative fails there, so PCRE2 gives the same match (checked
 * by the vectors in both modes and the fuzz target's comparison). */
static size_t llama3_ascii_match(const unsigned char *p, size_t len, size_t at)
{
    unsigned c = p[at];
    size_t i = at + 1;
    if (ascii_digit(c)) {
        while (i < len && i < at + 3 && ascii_digit(p[i])) i++;
        return i < len && i < at + 3 && p[i] >= 0x80 ? 0 : i;
    }
    if (!ascii_letter(c)) {
        if (c >= 0x80 || c == '\r' || c == '\n' || c == '\'' || i >= len || !ascii_letter(p[i])) return 0;
        i++;
    }
    while (i < len && ascii_letter(p[i])) i++;
    return i < len && p[i] >= 0x80 ? 0 : i;
}

/* One stretch of text between added tokens. */
static void encode_section(const ds_tok_hf *t, enc_state *e, const char *s, size_t n, ids_vec *out)
{
    if (!n) return;
    normalize(t, e, s, n);
    if (!e->norm.n) return;
    const char *p = e->norm.p; /* model_word leaves e->norm alone */
    size_t len = e->norm.n;
    if (!t->split) {
        if (t->spm_split && !t->plain) spm_chunks(t, e, p, len, out);
        else model_word(t, e, p, len, out, 0);
        return;
    }
    size_t at = 0, start = 0; /* at: end of the last piece; start: where to search */
    int fast = t->llama3_split && !t->plain;
    while (start <= len) {
        size_t ms = start, me = fast && start < len ? llama3_ascii_match((const unsigned char *)p, len, start) : 0;
        if (!me) {
            int r = t->jit ? pcre2_jit_match(t->split, (PCRE2_SPTR)p, len, start, 0, e->md, NULL)
                           : pcre2_match(t->split, (PCRE2_SPTR)p, len, start, PCRE2_NO_UTF_CHECK, e->md, NULL);
            if (r < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            ms = ov[0], me = ov[1];
        }
        if (ms > at) model_word(t, e, p + at, ms - at, out, 0);
        if (me > ms) model_word(t, e, p + ms, me - ms, out, 0);
        at = me;
        if (me == ms) { /* empty match: step one character on, as the reference does */
            if (me >= len) break;
            start = me + utf8_len((const unsigned char *)p + me, len - me);
        } else {
            start = me;
        }
    }
    if (at < len) model_word(t, e, p + at, len - at, out, 0);
}

/* Added tokens by first byte, longest first (the first of equal ones first). */
static void index_added(ds_tok_hf *t)
{
    t->added_order = ds_malloc(((size_t)t->n_added + 1) * sizeof *t->added_order);
    int k = 0;
    for (int c = 0; c < 256; c++) {
        int from = t->added_start[c] = k;
        for (int a = 0; a < t->n_added; a++) {
            if ((unsigned char)t->added[a].s[0] != c) continue;
            int j = k++;
            for (; j > from && t->added[t->added_order[j - 1]].len < t->added[a].len; j--)
                t->added_order[j] = t->added_order[j - 1];
            t->added_order[j] = a;
        }
        t->added_first[c] = k > from;
    }
    t->added_start[256] = k;
}

/* t->glue for spm_chunks: the last character of the left piece of every
 * merge whose right piece starts with "▁", sorted, each once. */
static void find_glue(ds_tok_hf *t)
{
    size_t cap = 16;
    t->glue = ds_malloc(cap * sizeof *t->glue);
    for (size_t i = 0; i < t->merges.cap; i++) {
        if (!t->merges.keys[i]) continue;
        uint64_t k = t->merges.keys[i] - 1;
        int32_t l = (int32_t)(k >> 32), r = (int32_t)(uint32_t)k;
        if (t->piece_len[r] < 3 || memcmp(t->piece[r], "\xe2\x96\x81", 3) != 0) continue;
        const unsigned char *p = (const unsigned char *)t->piece[l];
        size_t j = t->piece_len[l] - 1;
        while (j > 0 && (p[j] & 0xC0) == 0x80) j--;
        if (t->n_glue == cap) t->glue = ds_realloc(t->glue, (cap *= 2) * sizeof *t->glue);
        t->glue[t->n_glue++] = utf8_cp(p + j, t->piece_len[l] - j);
    }
    qsort(t->glue, t->n_glue, sizeof *t->glue, cmp_u32);
    size_t m = 0;
    for (size_t i = 0; i < t->n_glue; i++)
        if (!m || t->glue[m - 1] != t->glue[i]) t->glue[m++] = t->glue[i];
    t->n_glue = m;
}

static void enc_init(ds_tok_hf *t)
{
    index_added(t);
    if (t->kind == DS_TOK_HF_SPM && !t->split && !t->ignore_merges) {
        find_glue(t);
        t->spm_split = 1;
    }
    enc_state *e = ds_calloc(1, sizeof *e);
    e->slot_cap = CACHE_FIRST;
    e->slot = ds_calloc(e->slot_cap, sizeof *e->slot);
    if (t->split) e->md = pcre2_match_data_create_from_pattern(t->split, NULL);
    t->enc = e;
}

static void enc_free(enc_state *e)
{
    if (!e) return;
    free(e->sym.p);
    free(e->out.p);
    free(e->norm.p);
    free(e->tmp.p);
    ds_bpe_work_free(&e->work);
    if (e->md) pcre2_match_data_free(e->md);
    free(e->slot);
    free(e->keys.p);
    free(e->cids.p);
    free(e);
}

void ds_tok_hf_set_plain(ds_tok_hf *t, int plain) { t->plain = plain; }

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The offset of the first invalid UTF-8 sequence, or LEN. */
static size_t utf8_check(const char *text, size_t len)
{
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint64_t w;
        if (i + 8 <= len && (memcpy(&w, u + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8;
            continue;
        }
        size_t k = utf8_len(u + i, len - i);
        if (!k) return i;
        i += k;
    }
    return len;
}

/* The longest added token at TEXT[i] (the first of equal ones), or NULL. */
static const added_tok *added_at(const ds_tok_hf *t, const char *text, size_t len, size_t i)
{
    unsigned char c = (unsigned char)text[i];
    for (int k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
        const added_tok *x = &t->added[t->added_order[k]];
        if (x->len <= len - i && !memcmp(text + i, x->s, x->len)) return x;
    }
    return NULL;
}

int ds_tok_hf_encode(const ds_tok_hf *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    size_t bad = utf8_check(text, len);
    if (bad < len) return ds_err(DS_EXIT_INPUT, "text: invalid UTF-8 at byte %zu", bad);
    enc_state *e = t->enc;
    ids_vec *out = &e->out;
    out->n = 0;
    if (add_special) ids_add_n(out, t->prefix, (size_t)t->n_prefix);
    size_t sec = 0; /* start of the current section */
    int strip_next = 0;
    for (size_t i = 0; i < len;) {
        const added_tok *best = t->added_first[(unsigned char)text[i]] ? added_at(t, text, len, i) : NULL;
        if (!best) {
            i++;
            continue;
        }
        size_t end = i;
        if (strip_next)
            while (sec < end && is_ws((unsigned char)text[sec])) sec++;
        if (best->lstrip)
            while (end > sec && is_ws((unsigned char)text[end - 1])) end--;
        encode_section(t, e, text + sec, end - sec, out);
        ids_add(out, best->id);
        i += best->len;
        sec = i;
        strip_next = best->rstrip;
    }
    if (strip_next)
        while (sec < len && is_ws((unsigned char)text[sec])) sec++;
    encode_section(t, e, text + sec, len - sec, out);
    if (add_special) ids_add_n(out, t->suffix, (size_t)t->n_suffix);
    *ids = ds_malloc((out->n ? out->n : 1) * sizeof **ids);
    if (out->n) memcpy(*ids, out->p, out->n * sizeof **ids);
    *n = out->n;
    return 0;
}

/* ---- decoding: a list of strings through the decoder steps ---- */

typedef struct {
    buf *s;
    int32_t *id; /* the token each string came from, -1 once fused */
    size_t n, cap;
} strs;

static void strs_add(strs *l, const char *p, size_t n, int32_t id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->s = ds_realloc(l->s, l->cap * sizeof *l->s);
        l->id = ds_realloc(l->id, l->cap * sizeof *l->id);
    }
    l->s[l->n] = (buf){0};
    buf_add(&l->s[l->n], p, n);
    l->id[l->n++] = id;
}

static void strs_free(strs *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->s[i].p);
    free(l->s);
    free(l->id);
    memset(l, 0, sizeof *l);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_added(const ds_tok_hf *t, int32_t id)
{
    for (int a = 0; a < t->n_added; a++)
        if (t->added[a].id == id) return 1;
    return 0;
}

/* ByteFallback / ByteLevel: the bytes gathered so far become one string
 * (invalid UTF-8 as U+FFFD, as the reference decodes). */
static void flush_bytes(strs *out, buf *acc, buf *bytes)
{
    if (!bytes->n) return;
    acc->n = 0;
    buf_add(acc, "", 0);
    utf8_lossy(acc, (const unsigned char *)bytes->p, bytes->n);
    strs_add(out, acc->p, acc->n, -1);
    bytes->n = 0;
}

static void dec_step_run(const ds_tok_hf *t, const dec_step *st, strs *in, strs *out)
{
    buf acc = {0};
    if (st->kind == DEC_FUSE) {
        for (size_t i = 0; i < in->n; i++) buf_add(&acc, in->s[i].p ? in->s[i].p : "", in->s[i].n);
        strs_add(out, acc.p ? acc.p : "", acc.n, -1);
    } else if (st->kind == DEC_REPLACE) {
        for (size_t i = 0; i < in->n; i++) {
            acc.n = 0;
            buf_replace(&acc, in->s[i].p ? in->s[i].p : "", in->s[i].n, st->a, st->b);
            strs_add(out, acc.p, acc.n, in->id[i]);
        }
    } else if (st->kind == DEC_STRIP) {
        for (size_t i = 0; i < in->n; i++) {
            size_t a = 0, b = in->s[i].n;
            for (int k = 0; k < st->start && a < b && in->s[i].p[a] == st->a[0]; k++) a++;
            for (int k = 0; k < st->stop && b > a && in->s[i].p[b - 1] == st->a[0]; k++) b--;
            strs_add(out, in->s[i].p ? in->s[i].p + a : "", b - a, in->id[i]);
        }
    } else if (st->kind == DEC_BYTEFALLBACK) {
        buf bytes = {0};
        for (size_t i = 0; i <= in->n; i++) {
            const buf *s = i < in->n ? &in->s[i] : NULL;
            int v = -1;
            if (s && s->n == 6 && !memcmp(s->p, "<0x", 3) && s->p[5] == '>' && hexval(s->p[3]) >= 0 &&
                hexval(s->p[4]) >= 0)
                v = hexval(s->p[3]) * 16 + hexval(s->p[4]);
            if (v >= 0) {
                unsigned char c = (unsigned char)v;
                buf_add(&bytes, &c, 1);
                continue;
            }
            flush_bytes(out, &acc, &bytes);
            if (s) strs_add(out, s->p ? s->p : "", s->n, in->id[i]);
        }
        free(bytes.p);
    } else { /* DEC_BYTELEVEL: characters back to bytes; added tokens as they are */
        uint32_t inv_cp[512];
        memset(inv_cp, 0xff, sizeof inv_cp);
        for (int b = 0; b < 256; b++) inv_cp[t->lv_char[b]] = (uint32_t)b;
        buf bytes = {0};
        for (size_t i = 0; i <= in->n; i++) {
            const buf *s = i < in->n ? &in->s[i] : NULL;
            if (s && !(in->id[i] >= 0 && is_added(t, in->id[i]))) {
                const unsigned char *u = (const unsigned char *)s->p;
                for (size_t j = 0; j < s->n;) {
                    size_t k = utf8_len(u + j, s->n - j);
                    if (!k) k = 1;
                    uint32_t c = utf8_cp(u + j, k);
                    if (c < 512 && inv_cp[c] != 0xffffffffu) {
                        unsigned char b = (unsigned char)inv_cp[c];
                        buf_add(&bytes, &b, 1);
                    }
                    j += k;
                }
                continue;
            }
            flush_bytes(out, &acc, &bytes);
            if (s) strs_add(out, s->p ? s->p : "", s->n, in->id[i]);
        }
        free(bytes.p);
    }
    free(acc.p);
}

/* The reference's clean_up_tokenization: these replacements, in this order. */
static void cleanup(buf *b)
{
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    buf o = {0};
    for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
        o.n = 0;
        buf_replace(&o, b->p ? b->p : "", b->n, from[r], to[r]);
        buf x = *b;
        *b = o;
        o = x;
    }
    free(o.p);
}

int ds_tok_hf_decode(const ds_tok_hf *t, const int32_t *ids, size_t n, int skip_special, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    strs a = {0}, b = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->piece[ids[i]]) {
            strs_free(&a);
            return ds_err(DS_EXIT_INPUT, "ids: id %d at %zu is no piece", ids[i], i);
        }
        if (skip_special && t->is_special[ids[i]]) continue;
        strs_add(&a, t->piece[ids[i]], t->piece_len[ids[i]], ids[i]);
    }
    for (int s = 0; s < t->n_dec; s++) {
        dec_step_run(t, &t->dec[s], &a, &b);
        strs_free(&a);
        a = b;
        memset(&b, 0, sizeof b);
    }
    buf o = {0};
    buf_add(&o, "", 0);
    for (size_t i = 0; i < a.n; i++) buf_add(&o, a.s[i].p ? a.s[i].p : "", a.s[i].n);
    strs_free(&a);
    if (t->cleanup) cleanup(&o);
    *text = o.p;
    *len = o.n;
    return 0;
}
