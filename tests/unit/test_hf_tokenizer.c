/* Unit tests of io/hf_tokenizer.c (and the merge loop, src/bpe.c) against the
 * reference vectors in tests/data/tokenizers/NAME.jsonl, made by
 * tests/tokenizer/make_hf_vectors.js from the reference implementation.
 * The Llama-2-style tokenizer ships in data/tokenizers/llama2-style-32k; Llama
 * 3's is fetched by scripts/setup.sh into
 * $HOME/.cache/deltasoup/tokenizers/llama3-128k (or named by
 * DS_LLAMA3_TOKENIZER=PATH/tokenizer.json): without it the bytelevel-encode
 * case passes without checking, unless DS_REQUIRE_LLAMA3=1
 * (tests/tokenizer/hf_llama3.sh, which skips with 77 when the file is absent).
 * Reads under $top_srcdir (default "."). */
#include "config.h"
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/hf_tokenizer.h"
#include "src/bpe.h"
#include "src/ds.h"
#include "src/hash.h"
#include "tests/unit/check_main.h"
#include "tests/fuzz/fuzz_hf_tokenizer.c" /* LLVMFuzzerTestOneInput: replayed on the fuzz corpus */
#include <dirent.h>

static char top[4096], l2_path[4200], l3_path[4200];
static ds_tok_hf *l2;

static void setup(void) { ck_assert_msg(ds_tok_hf_load(l2_path, &l2) == 0, "%s", ds_errmsg()); }
static void teardown(void)
{
    ds_tok_hf_free(l2);
    l2 = NULL;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *p = NULL;
    size_t cap = 0, got;
    *n = 0;
    do {
        cap = 2 * cap + 65536;
        p = realloc(p, cap);
        got = fread(p + *n, 1, cap - *n, f);
        *n += got;
    } while (*n == cap);
    fclose(f);
    return p;
}

static void sha_hex(const void *p, size_t n, char out[65])
{
    ds_digest d;
    ds_sha256_buf(p, n, &d);
    ds_digest_hex(&d, out);
}

static void ids_sha(const int32_t *ids, size_t n, char out[65])
{
    char *s = malloc(12 * n + 1);
    size_t k = 0;
    s[0] = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(s + k, i ? ",%d" : "%d", ids[i]);
    sha_hex(s, k, out);
    free(s);
}

static int ids_eq(json_t *want, const int32_t *ids, size_t n)
{
    if (json_array_size(want) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return 0;
    return 1;
}

/* Every vector of FILE: 0 mismatches, or the count (the first printed). */
static int run_vectors(ds_tok_hf *t, const char *file, int *count)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/data/tokenizers/%s", top, file);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    int bad = 0;
    *count = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *v = json_loads(line, 0, &je);
        ck_assert_msg(v != NULL, "%s: %s", path, je.text);
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *tx = json_object_get(v, "text");
        size_t len;
        char *text;
        if (tx) {
            len = json_string_length(tx);
            text = malloc(len + 1);
            memcpy(text, json_string_value(tx), len + 1);
        } else {
            char fp[4200];
            snprintf(fp, sizeof fp, "%s/%s", top, json_string_value(json_object_get(v, "file")));
            text = read_all(fp, &len);
        }
        const char *what = NULL;
        int32_t *ids, *plain;
        size_t n, np;
        char *dec, *dskip;
        size_t ld, ls;
        ck_assert_msg(ds_tok_hf_encode(t, text, len, 1, &ids, &n) == 0, "%s: %s", name, ds_errmsg());
        ck_assert_int_eq(ds_tok_hf_encode(t, text, len, 0, &plain, &np), 0);
        ck_assert_int_eq(ds_tok_hf_decode(t, ids, n, 0, &dec, &ld), 0);
        ck_assert_int_eq(ds_tok_hf_decode(t, ids, n, 1, &dskip, &ls), 0);
        if (tx) {
            json_t *d = json_object_get(v, "decoded"), *ds = json_object_get(v, "decoded_skip");
            if (!ids_eq(json_object_get(v, "ids"), ids, n)) what = "ids";
            else if (!ids_eq(json_object_get(v, "ids_plain"), plain, np)) what = "ids_plain";
            else if (json_string_length(d) != ld || memcmp(json_string_value(d), dec, ld)) what = "decoded";
            else if (json_string_length(ds) != ls || memcmp(json_string_value(ds), dskip, ls)) what = "decoded_skip";
        } else {
            char h[65];
            ids_sha(ids, n, h);
            if (strcmp(h, json_string_value(json_object_get(v, "ids_sha256")))) what = "ids";
            ids_sha(plain, np, h);
            if (!what && strcmp(h, json_string_value(json_object_get(v, "ids_plain_sha256")))) what = "ids_plain";
            sha_hex(dec, ld, h);
            if (!what && strcmp(h, json_string_value(json_object_get(v, "decoded_sha256")))) what = "decoded";
            sha_hex(dskip, ls, h);
            if (!what && strcmp(h, json_string_value(json_object_get(v, "decoded_skip_sha256")))) what = "decoded_skip";
        }
        if (what) {
            if (!bad) {
                fprintf(stderr, "%s: vector %s: %s differ; got ids", file, name, what);
                for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  decoded '%s'\n", dec);
            }
            bad++;
        }
        (*count)++;
        free(ids), free(plain), free(dec), free(dskip), free(text);
        json_decref(v);
    }
    free(line);
    fclose(f);
    return bad;
}

static int piece(const char *s) { return ds_tok_hf_id(l2, s); }

START_TEST(test_load)
{
    ck_assert_int_eq(ds_tok_hf_kind_of(l2), DS_TOK_HF_SPM);
    ck_assert_int_eq(ds_tok_hf_n_ids(l2), 32000);
    ck_assert_int_eq(piece("\xe2\x96\x81Hello"), 22557);
    ck_assert_int_eq(piece("<s>"), 1);
    ck_assert_int_eq(piece("<0x0A>"), 13);
    ck_assert_str_eq(ds_tok_hf_piece(l2, 2), "</s>");
    ck_assert_ptr_null(ds_tok_hf_piece(l2, 32000));
    ck_assert_int_eq(piece("no such piece"), -1);
}
END_TEST

/* The merge loop alone: ranks first, then leftmost; merged symbols merge on. */
START_TEST(test_bpe_pure)
{
    ds_bpe_pairs p;
    ds_bpe_pairs_init(&p, 2);
    /* symbols a=0 b=1; ab=2 (rank 1), aa=3 (rank 0), aab=4 (rank 2) */
    ck_assert_int_eq(ds_bpe_pairs_put(&p, 0, 1, 1, 2), 0);
    ck_assert_int_eq(ds_bpe_pairs_put(&p, 0, 0, 0, 3), 0);
    ck_assert_int_eq(ds_bpe_pairs_put(&p, 3, 1, 2, 4), 0);
    ck_assert_int_eq(ds_bpe_pairs_put(&p, 0, 1, 7, 9), 1); /* repeated pair */
    for (int i = 0; i < 1000; i++) ds_bpe_pairs_put(&p, 100 + i, 100 + i, 10 + i, 5000 + i); /* grows */
    ds_bpe_work w = {0};
    int32_t s1[] = {0, 0, 0, 1}; /* aaab: aa (rank 0, leftmost) a b -> aa ab -> no aab? aa+ab none */
    ck_assert_int_eq(ds_bpe_merge(&p, s1, 4, &w), 2);
    ck_assert_int_eq(s1[0], 3);
    ck_assert_int_eq(s1[1], 2);
    int32_t s2[] = {0, 0, 1, 0, 0, -5}; /* aab aa ? */
    ck_assert_int_eq(ds_bpe_merge(&p, s2, 6, &w), 3);
    ck_assert_int_eq(s2[0], 4);
    ck_assert_int_eq(s2[1], 3);
    ck_assert_int_eq(s2[2], -5);
    int32_t s3[] = {0, 0, 0, 0, 0}; /* aaaaa -> aa aa a */
    ck_assert_int_eq(ds_bpe_merge(&p, s3, 5, &w), 3);
    ck_assert_int_eq(s3[0], 3);
    ck_assert_int_eq(s3[1], 3);
    ck_assert_int_eq(s3[2], 0);
    int32_t rank, id;
    ck_assert_int_eq(ds_bpe_pairs_get(&p, 599, 599, &rank, &id), 1);
    ck_assert_int_eq(id, 5499);
    ds_bpe_work_free(&w);
    ds_bpe_pairs_free(&p);
}
END_TEST

/* Both encoders: plain (as the reference runs) and the default (word cache,
 * SentencePiece sections in chunks), the latter twice (the cache warm). */
START_TEST(test_spm_vectors)
{
    for (int pass = 0; pass < 3; pass++) {
        ds_tok_hf_set_plain(l2, pass == 0);
        int count, bad = run_vectors(l2, "llama2-style-32k.jsonl", &count);
        ck_assert_int_ge(count, 40);
        ck_assert_msg(bad == 0, "pass %d: %d of %d vectors differ", pass, bad, count);
    }
}
END_TEST

/* A tiny SentencePiece-kind tokenizer from JSON text (normalizer Prepend "▁",
 * Replace " " -> "▁"); MODEL is the model object. */
static ds_tok_hf *tiny_spm(const char *model)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]},"
             "\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,\"added_tokens\":[],\"model\":%s}",
             model);
    ds_tok_hf *t;
    ck_assert_msg(ds_tok_hf_load_text("tiny.json", json, strlen(json), NULL, 0, &t) == 0, "%s", ds_errmsg());
    return t;
}

static void tiny_is(ds_tok_hf *t, const char *text, const int32_t *want, size_t n)
{
    for (int plain = 1; plain >= 0; plain--)
        for (int again = 0; again < 2; again++) { /* the cache cold, then warm */
            ds_tok_hf_set_plain(t, plain);
            int32_t *ids;
            size_t got;
            ck_assert_int_eq(ds_tok_hf_encode(t, text, strlen(text), 0, &ids, &got), 0);
            ck_assert_msg(got == n, "'%s' plain %d: %zu ids, want %zu", text, plain, got, n);
            for (size_t i = 0; i < n; i++) ck_assert_int_eq(ids[i], want[i]);
            free(ids);
        }
}

/* The chunked SentencePiece encoder splits before "▁" only where no merge
 * joins the character before it to a "▁...": a merge "x ▁" keeps "x▁"
 * together; unknown characters fuse across chunks as across one word. */
START_TEST(test_spm_chunks)
{
    ds_tok_hf *t = tiny_spm("{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"\u2581\":1,\"x\":2,\"y\":3,\"x\u2581\":4,"
                            "\"\u2581y\":5},\"merges\":[\"x \u2581\",\"\u2581 y\"],\"unk_token\":\"<unk>\"}");
    int32_t a[] = {1, 4, 3}; /* ▁ x▁ y: "x ▁" (rank 0) wins over "▁ y" */
    tiny_is(t, "x y", a, 3);
    int32_t b[] = {5, 5}; /* ▁y ▁y: split before the second ▁ */
    tiny_is(t, "y y", b, 2);
    int32_t c[] = {1, 4, 4, 2}; /* ▁ x▁ x▁ x */
    tiny_is(t, "x x x", c, 4);
    int32_t d[] = {5, 0, 0, 1, 2}; /* ▁y <unk> <unk> ▁ x: é is unknown (no fuse_unk here) */
    tiny_is(t, "y\xc3\xa9\xc3\xa9 x", d, 5);
    ds_tok_hf_free(t);
    /* no "▁" piece: every character unknown, fused into one <unk> across chunks */
    t = tiny_spm("{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"x\":1},\"merges\":[],\"unk_token\":\"<unk>\","
                 "\"fuse_unk\":true}");
    int32_t e[] = {0};
    tiny_is(t, "\xc3\xa9 \xc3\xa9 \xc3\xa9", e, 1);
    int32_t f[] = {0, 1, 0}; /* <unk> x <unk> */
    tiny_is(t, " x  ", f, 3);
    ds_tok_hf_free(t);
}
END_TEST

START_TEST(test_bytelevel_vectors)
{
    if (access(l3_path, R_OK) != 0) {
        ck_assert_msg(!getenv("DS_REQUIRE_LLAMA3"), "%s is absent", l3_path);
        return;
    }
    ds_tok_hf *t;
    ck_assert_msg(ds_tok_hf_load(l3_path, &t) == 0, "%s", ds_errmsg());
    ck_assert_int_eq(ds_tok_hf_kind_of(t), DS_TOK_HF_BYTELEVEL);
    ck_assert_int_eq(ds_tok_hf_n_ids(t), 128256);
    for (int pass = 0; pass < 3; pass++) {
        ds_tok_hf_set_plain(t, pass == 0);
        int count, bad = run_vectors(t, "llama3-128k.jsonl", &count);
        ck_assert_int_ge(count, 40);
        ck_assert_msg(bad == 0, "pass %d: %d of %d vectors differ", pass, bad, count);
    }
    ds_tok_hf_free(t);
}
END_TEST

/* Random texts of pieces where Llama 3's split pattern has its edges (ASCII
 * letters and digits next to non-ASCII letters and digits, apostrophes,
 * CR/LF, runs of spaces): the same ids plain (PCRE2 on every pre-token) and
 * by default (the ASCII matcher, the word cache). */
static void modes_agree(ds_tok_hf *t, int n_texts)
{
    static const char *const pieces[] = {"a", "Zq", "b", "'s", "'", "'LL", "'x", "1", "12", "9", " ", "  ", "\t", "\r\n",
                                         "\n", "\r", "\xc3\xa9", "\xd0\xb6", "\xd9\xa3", "\xc2\xb2", "\xe4\xb8\xad",
                                         "\xf0\x9f\x98\x80", ".", ",", "!", "-", "$", "\xc2\xa0", "\x0b", "<|eot|>"};
    uint64_t r = 12345;
    char text[512];
    for (int k = 0; k < n_texts; k++) {
        size_t len = 0;
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        int m = 1 + (int)(r >> 60);
        for (int j = 0; j < m; j++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *p = pieces[(r >> 33) % (sizeof pieces / sizeof *pieces)];
            memcpy(text + len, p, strlen(p));
            len += strlen(p);
        }
        int32_t *a, *b;
        size_t na, nb;
        ds_tok_hf_set_plain(t, 1);
        ck_assert_int_eq(ds_tok_hf_encode(t, text, len, 0, &a, &na), 0);
        ds_tok_hf_set_plain(t, 0);
        ck_assert_int_eq(ds_tok_hf_encode(t, text, len, 0, &b, &nb), 0);
        ck_assert_msg(na == nb && !memcmp(a, b, na * sizeof *a), "text %d '%.*s': plain and default differ", k,
                      (int)len, text);
        free(a), free(b);
    }
}

/* 70000 different words (the word cache grows to its largest table, then
 * is emptied and refilled), 1000 a call: the same ids plain and by default. */
static void many_words_agree(ds_tok_hf *t)
{
    char *text = malloc(1000 * 8);
    for (int call = 0; call < 70; call++) {
        size_t len = 0;
        for (int w = 0; w < 1000; w++) {
            int v = call * 1000 + w;
            text[len++] = ' ';
            for (int d = 0; d < 4; d++, v /= 26) text[len++] = (char)('a' + v % 26);
        }
        int32_t *a, *b;
        size_t na, nb;
        ds_tok_hf_set_plain(t, 1);
        ck_assert_int_eq(ds_tok_hf_encode(t, text, len, 0, &a, &na), 0);
        ds_tok_hf_set_plain(t, 0);
        ck_assert_int_eq(ds_tok_hf_encode(t, text, len, 0, &b, &nb), 0);
        ck_assert_msg(na == nb && !memcmp(a, b, na * sizeof *a), "call %d: plain and default differ", call);
        free(a), free(b);
    }
    free(text);
}

START_TEST(test_many_words)
{
    many_words_agree(l2);
    if (access(l3_path, R_OK) == 0) {
        ds_tok_hf *t;
        ck_assert_msg(ds_tok_hf_load(l3_path, &t) == 0, "%s", ds_errmsg());
        many_words_agree(t);
        ds_tok_hf_free(t);
    }
}
END_TEST

START_TEST(test_split_modes)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/fuzz/hf_tokenizer_corpus/bytelevel-basic", top);
    size_t n;
    char *p = read_all(path, &n);
    ds_tok_hf *t;
    ck_assert_msg(ds_tok_hf_load_text(path, p, strlen(p), NULL, 0, &t) == 0, "%s", ds_errmsg());
    free(p);
    modes_agree(t, 20000);
    ds_tok_hf_free(t);
    if (access(l3_path, R_OK) == 0) {
        ck_assert_msg(ds_tok_hf_load(l3_path, &t) == 0, "%s", ds_errmsg());
        modes_agree(t, 20000);
        ds_tok_hf_free(t);
    }
}
END_TEST

static void dec_is(const int32_t *ids, size_t n, int skip, const char *want)
{
    char *s;
    size_t len;
    ck_assert_int_eq(ds_tok_hf_decode(l2, ids, n, skip, &s, &len), 0);
    ck_assert_str_eq(s, want);
    ck_assert_uint_eq(len, strlen(want));
    free(s);
}

START_TEST(test_decode)
{
    dec_is(NULL, 0, 0, "");
    int32_t hello[] = {1, 22557, 1526};
    dec_is(hello, 3, 0, "<s> Hello world");
    dec_is(hello, 3, 1, "Hello world"); /* Strip drops the first space */
    /* byte pieces: a valid sequence, then invalid bytes one U+FFFD each (maximal subparts) */
    int32_t euro[] = {3 + 0xE2, 3 + 0x82, 3 + 0xAC, 3 + 0xE2, 3 + 0x82, 3 + 0x41, 3 + 0xFF};
    dec_is(euro, 7, 0, "\xe2\x82\xac\xef\xbf\xbd" "A\xef\xbf\xbd");
    int32_t bad[] = {5, 32000};
    char *s;
    size_t len;
    ck_assert_int_eq(ds_tok_hf_decode(l2, bad, 2, 0, &s, &len), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "ids: id 32000 at 1 is no piece");
}
END_TEST

static void enc_is(const char *text, int special, const int32_t *want, size_t n)
{
    int32_t *ids;
    size_t got;
    ck_assert_int_eq(ds_tok_hf_encode(l2, text, strlen(text), special, &ids, &got), 0);
    ck_assert_uint_eq(got, n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(ids[i], want[i]);
    free(ids);
}

START_TEST(test_special)
{
    int32_t a[] = {1, 22557, 1526};
    enc_is("Hello world", 1, a, 3);
    enc_is("Hello world", 0, a + 1, 2);
    /* literal special tokens are matched; the text after each gets its own "▁" */
    int32_t b[] = {1, 1, 22557, 2};
    enc_is("<s>Hello</s>", 1, b, 4);
    enc_is("", 0, NULL, 0);
    int32_t c[] = {1};
    enc_is("", 1, c, 1);
    int32_t sk[] = {1, 22557, 2};
    dec_is(sk, 3, 1, "Hello");
}
END_TEST

static char tmpdir[64];

static int load_text(const char *json, const char *want_msg)
{
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    ds_tok_hf *t = NULL;
    int rc = ds_tok_hf_load(path, &t);
    if (want_msg) {
        char full[512];
        snprintf(full, sizeof full, "%s: %s", path, want_msg);
        ck_assert_str_eq(ds_errmsg(), full);
        ck_assert_ptr_null(t);
    }
    ds_tok_hf_free(t);
    return rc;
}

#define MODEL(M) "{\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,\"added_tokens\":[],\"model\":" M "}"

START_TEST(test_bad_input)
{
    strcpy(tmpdir, "/tmp/test_hf_tok.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"), NULL), 0);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}"),
                               "model type WordPiece is not supported (BPE only)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}"),
                               "model type Unigram is not supported (BPE only)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"ab\"]}"),
                               "merge 0 is not \"LEFT RIGHT\""), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",\"a c\"]}"),
                               "merge 1 ('a' 'c'): its right piece is not in the vocabulary"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}"),
                               "merge 0 ('a' 'b'): its merged piece is not in the vocabulary"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",\"a b\"]}"),
                               "merge 1 ('a' 'b') is given twice"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}"),
                               "vocab id 0 is given twice"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"<unk>\"}"),
                               "unk_token '<unk>' is not in the vocabulary"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":false}}",
                               "byte-level vocabulary lacks the piece of byte 0x00"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"normalizer\":{\"type\":\"NFKC\"}}",
                               "normalizer NFKC is not supported (Prepend, Replace of a string)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("[1]", "not a JSON object"), DS_EXIT_INPUT);
    /* the file itself: not JSON, cut short, invalid UTF-8 */
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}",
                               "'}' expected near end of file (line 1)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\xff\":0},\"merges\":[]}}",
                               "unable to decode byte 0xff near '\"a' (line 1)"), DS_EXIT_INPUT);
    /* other model types, no model */
    ck_assert_int_eq(load_text(MODEL("{\"vocab\":{\"a\":0},\"merges\":[]}"),
                               "model type (none) is not supported (BPE only)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"WordLevel\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"}"),
                               "model type WordLevel is not supported (BPE only)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"normalizer\":null}", "no model"), DS_EXIT_INPUT);
    /* a broken vocabulary */
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":[[\"a\",0]],\"merges\":[]}"),
                               "model.vocab is not an object"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}"),
                               "vocab piece 'a' has a bad id"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}"),
                               "vocab piece 'a' has a bad id"), DS_EXIT_INPUT);
    /* a broken merges list */
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{\"a a\":0}}"),
                               "model.merges is not a list"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0}}"), "model.merges is not a list"),
                     DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a a\"]}"),
                               "merge 0 is not \"LEFT RIGHT\""), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[[\"a\",\"a\",\"a\"]]}"),
                               "merge 0 is not \"LEFT RIGHT\""), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[[\"a\",\"a\"],7]}"),
                               "merge 1 is not \"LEFT RIGHT\""), DS_EXIT_INPUT);
    /* a merge or a token referring to a missing piece */
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"c\",\"b\"]]}"),
                               "merge 0 ('c' 'b'): its left piece is not in the vocabulary"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text(MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\" b\"]}"),
                               "merge 0 ('' 'b'): its left piece is not in the vocabulary"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true}]}",
                               "added token '<s>' has id 0, which is the piece 'a'"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"added_tokens\":[{\"id\":1}]}",
                               "added token 0 has no content or a bad id"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                               "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":"
                               "{\"id\":\"<s>\",\"ids\":[5]}}}}",
                               "post-processor: special token id 5 is no piece"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                               "{\"id\":\"<s>\"}}],\"special_tokens\":{}}}",
                               "post-processor: special token 0 of the template is not defined"), DS_EXIT_INPUT);
    /* pre-tokenizers and decoders of other kinds, a broken regex */
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
                               "pre-tokenizer Whitespace is not supported (Split with a regex, Isolated; ByteLevel "
                               "without its regex or prefix space)"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
                               "split regex: missing closing parenthesis at offset 1"), DS_EXIT_INPUT);
    ck_assert_int_eq(load_text("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                               "\"decoder\":{\"type\":\"WordPiece\"}}",
                               "decoder WordPiece is not supported (Replace, ByteFallback, Fuse, Strip, ByteLevel)"),
                     DS_EXIT_INPUT);
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    /* invalid UTF-8 in the text */
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(ds_tok_hf_encode(l2, "ab\xc3(", 4, 1, &ids, &n), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "text: invalid UTF-8 at byte 2");
    ck_assert_int_eq(ds_tok_hf_encode(l2, "\xed\xa0\x80", 3, 1, &ids, &n), DS_EXIT_INPUT); /* a surrogate */
    ck_assert_int_eq(ds_tok_hf_encode(l2, "\xc0\xaf", 2, 1, &ids, &n), DS_EXIT_INPUT);     /* overlong */
    ck_assert_int_eq(ds_tok_hf_encode(l2, "0123456789abcdef\xff", 17, 1, &ids, &n), DS_EXIT_INPUT); /* after ASCII */
    ck_assert_str_eq(ds_errmsg(), "text: invalid UTF-8 at byte 16");
    ck_assert_int_eq(ds_tok_hf_encode(l2, "\xe2\x96", 2, 0, &ids, &n), DS_EXIT_INPUT); /* cut short */
    ck_assert_str_eq(ds_errmsg(), "text: invalid UTF-8 at byte 0");
    ck_assert_int_eq(ds_tok_hf_encode(l2, "a\xf4\x90\x80\x80", 5, 0, &ids, &n), DS_EXIT_INPUT); /* > U+10FFFF */
    ck_assert_str_eq(ds_errmsg(), "text: invalid UTF-8 at byte 1");
}
END_TEST

/* Every file of the fuzz target's corpus (the seeds, and any input that once
 * crashed it) through the target's checks: a failure aborts. */
START_TEST(test_fuzz_corpus)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/hf_tokenizer_corpus", top);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    struct dirent *de;
    int count = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[8500];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t n;
        char *p = read_all(path, &n);
        ck_assert_int_eq(LLVMFuzzerTestOneInput((const uint8_t *)p, n), 0);
        free(p);
        count++;
    }
    closedir(d);
    ck_assert_int_ge(count, 4);
}
END_TEST

int main(void)
{
    const char *src = getenv("top_srcdir");
    snprintf(top, sizeof top, "%s", src ? src : ".");
    snprintf(l2_path, sizeof l2_path, "%s/data/tokenizers/llama2-style-32k/tokenizer.json", top);
    const char *l3 = getenv("DS_LLAMA3_TOKENIZER"), *home = getenv("HOME");
    if (l3) snprintf(l3_path, sizeof l3_path, "%s", l3);
    else snprintf(l3_path, sizeof l3_path, "%s/.cache/deltasoup/tokenizers/llama3-128k/tokenizer.json", home ? home : "");
    Suite *s = suite_create("hf_tokenizer");
    TCase *load = ds_check_case(s, "load", 60);
    tcase_add_test(load, test_load);
    TCase *spm = ds_check_case(s, "spm-encode", 120);
    tcase_add_test(spm, test_bpe_pure);
    tcase_add_test(spm, test_spm_vectors);
    tcase_add_test(spm, test_spm_chunks);
    TCase *bl = ds_check_case(s, "bytelevel-encode", 120);
    tcase_add_test(bl, test_bytelevel_vectors);
    tcase_add_test(bl, test_split_modes);
    tcase_add_test(bl, test_many_words);
    TCase *dec = ds_check_case(s, "decode", 60);
    tcase_add_test(dec, test_decode);
    TCase *sp = ds_check_case(s, "special", 60);
    tcase_add_test(sp, test_special);
    TCase *bad = ds_check_case(s, "bad-input", 60);
    tcase_add_test(bad, test_bad_input);
    tcase_add_test(bad, test_fuzz_corpus);
    TCase *all[] = {load, spm, bl, dec, sp, bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tcase_add_checked_fixture(all[i], setup, teardown);
    return ds_check_run(s);
}
