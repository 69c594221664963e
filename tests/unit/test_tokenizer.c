/* Unit tests of io/tokenizer.c on the shipped stories260K vocabulary.
 * Expected ids are derived by hand from the vocabulary (looked up by piece),
 * not from the encoder; tests/tokenizer/bpe_ref.sh compares with the
 * independent Python reference through this program's --encode mode:
 *   test_tokenizer --encode TOKENIZER.bin   (stdin: one hex-encoded text per
 *   line; stdout: its ids with BOS, space-separated, one line per text). */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/tokenizer.h"
#include "src/ds.h"
#include "tests/unit/check_main.h"

static char tok_path[4096], corpus_dir[4096];
static ds_tokenizer tok;

static void setup(void)
{
    ck_assert_int_eq(ds_tokenizer_load_llama2c(tok_path, 512, &tok), 0);
}

static void teardown(void) { ds_tokenizer_free(&tok); }

static int piece(const char *s) { return ds_tokenizer_lookup(&tok, s, (int)strlen(s)); }

START_TEST(test_load)
{
    ck_assert_int_eq(tok.vocab_size, 512);
    ck_assert_int_eq(tok.max_token_length, 7);
    ck_assert_str_eq(tok.pieces[0], "<unk>");
    ck_assert_str_eq(tok.pieces[1], "\n<s>\n");
    ck_assert_str_eq(tok.pieces[3 + 0x41], "<0x41>");
    ck_assert_str_eq(tok.pieces[265], " the");
    ck_assert_float_eq(tok.scores[260], -1.0f);
    ck_assert_str_eq(tok.pieces[503], "\xe2\x82\xac"); /* the euro sign is a piece */
    ck_assert_int_eq(piece(" the"), 265);
    ck_assert_int_eq(piece("<0xFF>"), 258);
    ck_assert_int_eq(piece("no such piece"), -1);
    /* vocab_size 0: take every token in the file. */
    ds_tokenizer all;
    ck_assert_int_eq(ds_tokenizer_load_llama2c(tok_path, 0, &all), 0);
    ck_assert_int_eq(all.vocab_size, 512);
    ds_tokenizer_free(&all);
}
END_TEST

START_TEST(test_encode_fixed)
{
    int ids[64];
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "", 0, 0, ids), 0);
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "", 1, 1, ids), 2);
    ck_assert_int_eq(ids[0], DS_TOK_BOS);
    ck_assert_int_eq(ids[1], DS_TOK_EOS);
    /* " the" is a piece: the whole word merges into it. */
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "the", 1, 1, ids), 3);
    ck_assert_int_eq(ids[1], piece(" the"));
    ck_assert_int_eq(ids[2], DS_TOK_EOS);
    /* U+1F600 is no piece: the dummy space stays alone, then 4 fallback bytes. */
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "\xf0\x9f\x98\x80", 0, 0, ids), 5);
    ck_assert_int_eq(ids[0], piece(" "));
    ck_assert_int_eq(ids[1], 3 + 0xf0);
    ck_assert_int_eq(ids[2], 3 + 0x9f);
    ck_assert_int_eq(ids[3], 3 + 0x98);
    ck_assert_int_eq(ids[4], 3 + 0x80);
    /* Stray continuation bytes do not join the dummy prefix (run.c adds it
     * as its own piece). */
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "\x80", 0, 0, ids), 2);
    ck_assert_int_eq(ids[0], piece(" "));
    ck_assert_int_eq(ids[1], 3 + 0x80);
    /* The euro sign is a 3-byte piece of its own. */
    ck_assert_int_eq(ds_tokenizer_encode(&tok, "\xe2\x82\xac", 0, 0, ids), 2);
    ck_assert_int_eq(ids[1], 503);
}
END_TEST

/* A tiny vocabulary where the merge order decides the result. */
START_TEST(test_merge_order)
{
    const char *p[] = {"<unk>", "<s>", "</s>", " ", "a", "b", "ab", "ba", " a"};
    float sc[] = {0, 0, 0, 0, 0, 0, 5, 5, 1};
    ds_tokenizer t;
    ck_assert_int_eq(ds_tokenizer_from_arrays(9, 5, p, NULL, sc, &t), 0);
    int ids[16];
    /* " a b a": "ab" and "ba" tie at 5; the leftmost ("ab") wins, then no
     * merge applies (" ab", "aba" are not pieces). Rightmost-first would give
     * " a" + "ba". */
    ck_assert_int_eq(ds_tokenizer_encode(&t, "aba", 0, 0, ids), 3);
    ck_assert_int_eq(ids[0], 3);
    ck_assert_int_eq(ids[1], 6);
    ck_assert_int_eq(ids[2], 4);
    /* Higher score first: " a" (1) loses to "ab" (5) even though it is left. */
    ck_assert_int_eq(ds_tokenizer_encode(&t, "ab", 0, 0, ids), 2);
    ck_assert_int_eq(ids[1], 6);
    /* Byte fallback outside a 9-token vocabulary is <unk>. */
    ck_assert_int_eq(ds_tokenizer_encode(&t, "z", 0, 0, ids), 2);
    ck_assert_int_eq(ids[1], DS_TOK_UNK);
    ds_tokenizer_free(&t);

    float bad[] = {0, 0, 0, 0, 0, 0, 5, 5, 1.0f / 0.0f};
    ck_assert_int_eq(ds_tokenizer_from_arrays(9, 5, p, NULL, bad, &t), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 8"));
    ck_assert_int_eq(ds_tokenizer_from_arrays(9, 1, p, NULL, sc, &t), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 0: length 5"));
}
END_TEST

START_TEST(test_decode)
{
    int n;
    const char *s = ds_tokenizer_decode(&tok, DS_TOK_BOS, piece(" the"), &n);
    ck_assert_int_eq(n, 3);
    ck_assert_mem_eq(s, "the", 3);
    s = ds_tokenizer_decode(&tok, 42, piece(" the"), &n);
    ck_assert_int_eq(n, 4);
    ck_assert_mem_eq(s, " the", 4);
    s = ds_tokenizer_decode(&tok, 42, 3 + 0x41, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(s[0], 'A');
    s = ds_tokenizer_decode(&tok, 42, 3 + 0x00, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(s[0], 0);
    ck_assert_ptr_null(ds_tokenizer_decode(&tok, 0, 512, &n));
    int ids[] = {DS_TOK_BOS, piece(" the"), piece(" "), 3 + 0xe2, 3 + 0x82, 3 + 0xac, DS_TOK_EOS};
    size_t len;
    char *d = ds_tokenizer_decode_ids(&tok, ids, 7, &len);
    ck_assert_str_eq(d, "the \xe2\x82\xac");
    ck_assert_uint_eq(len, 7);
    free(d);
    ids[2] = -3;
    ck_assert_ptr_null(ds_tokenizer_decode_ids(&tok, ids, 7, &len));
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 2: id -3"));
}
END_TEST

static void roundtrip(const char *text)
{
    size_t n = strlen(text);
    int *ids = malloc((n + 3) * sizeof *ids);
    int k = ds_tokenizer_encode(&tok, text, 1, 1, ids);
    ck_assert_int_le(k, (int)n + 3);
    size_t len;
    char *d = ds_tokenizer_decode_ids(&tok, ids, k, &len);
    ck_assert_uint_eq(len, n);
    ck_assert(memcmp(d, text, n) == 0);
    free(d);
    free(ids);
}

/* decode(encode(x)) == x on the whole corpus, and encoding is fast. */
START_TEST(test_roundtrip_corpus)
{
    const char *files[] = {"tinystories_train_excerpt.txt", "tinystories_valid_fragment.txt",
                           "tinystories_sample.txt"};
    for (int f = 0; f < 3; f++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", corpus_dir, files[f]);
        char *text;
        size_t n;
        ck_assert_int_eq(ds_read_file(path, &text, &n), 0);
        int *ids = malloc((n + 3) * sizeof *ids);
        double t0 = ds_now();
        int k = ds_tokenizer_encode(&tok, text, 1, 0, ids);
        double dt = ds_now() - t0;
        printf("encode %s: %zu bytes -> %d tokens in %.1f ms\n", files[f], n, k, dt * 1e3);
        /* O(n^2) merging would take seconds on the 197 KB excerpt. */
        ck_assert(dt < 1.0);
        size_t len;
        char *d = ds_tokenizer_decode_ids(&tok, ids, k, &len);
        ck_assert_uint_eq(len, n);
        ck_assert(memcmp(d, text, n) == 0);
        free(d);
        free(ids);
        free(text);
    }
    roundtrip(" leading and trailing spaces  ");
    roundtrip("\n\nnewlines\r\n\t");
    roundtrip("\x80\xff\xfe invalid UTF-8 \xe2\x82");
    roundtrip("\xf0\x9f\x98\x80\xf0\x9f\x98\x80 caf\xc3\xa9");
}
END_TEST

/* ---- malformed tokenizer files */

static char *slurp_tok(size_t *n)
{
    char *d;
    ck_assert_int_eq(ds_read_file(tok_path, &d, n), 0);
    return d;
}

static int load_bytes(const char *bytes, size_t n, int vocab, char *path, size_t pn)
{
    snprintf(path, pn, "/tmp/ds_test_tok_%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    ds_tokenizer t;
    int rc = ds_tokenizer_load_llama2c(path, vocab, &t);
    if (rc == 0) ds_tokenizer_free(&t);
    remove(path);
    return rc;
}

/* Byte offset of token i's record in the file. */
static size_t token_offset(const char *d, int i)
{
    size_t o = 4;
    for (int k = 0; k < i; k++) {
        int32_t len;
        memcpy(&len, d + o + 4, 4);
        o += 8 + (size_t)len;
    }
    return o;
}

START_TEST(test_malformed_files)
{
    char path[256];
    size_t n;
    char *d = slurp_tok(&n);

    ds_tokenizer t;
    ck_assert_int_eq(ds_tokenizer_load_llama2c("/nonexistent/tok.bin", 512, &t), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "/nonexistent/tok.bin"));

    /* Cut inside token 300's piece. */
    size_t o = token_offset(d, 300);
    ck_assert_int_eq(load_bytes(d, o + 9, 512, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), path));
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 300: truncated"));
    /* Cut between records: more tokens expected than the file holds. */
    ck_assert_int_eq(load_bytes(d, n, 600, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 512: truncated file (expected 600 tokens)"));
    /* Trailing bytes: a tokenizer of another vocabulary size. */
    ck_assert_int_eq(load_bytes(d, n, 511, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "trailing bytes after 511 tokens"));
    /* An absurd length in token 10. */
    char *c = malloc(n);
    memcpy(c, d, n);
    int32_t big = 1000000;
    memcpy(c + token_offset(d, 10) + 4, &big, 4);
    ck_assert_int_eq(load_bytes(c, n, 512, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "token 10: length 1000000 out of range"));
    /* A negative max_token_length: not a tokenizer file. */
    memcpy(c, d, n);
    int32_t neg = -1;
    memcpy(c, &neg, 4);
    ck_assert_int_eq(load_bytes(c, n, 512, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "max_token_length -1"));
    ck_assert_int_eq(load_bytes(c, 2, 512, path, sizeof path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "truncated tokenizer file"));
    free(c);
    free(d);
}
END_TEST

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* --encode mode for the Python reference test. */
static int encode_stdin(const char *path)
{
    ds_tokenizer t;
    if (ds_tokenizer_load_llama2c(path, 0, &t)) {
        fprintf(stderr, "%s\n", ds_errmsg());
        return 3;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, stdin)) >= 0) {
        size_t n = 0;
        for (ssize_t i = 0; i + 1 < r && line[i] != '\n'; i += 2)
            line[n++] = (char)(hexval(line[i]) * 16 + hexval(line[i + 1]));
        line[n] = 0;
        int *ids = malloc((n + 3) * sizeof *ids);
        int k = ds_tokenizer_encode(&t, line, 1, 0, ids);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
    }
    free(line);
    ds_tokenizer_free(&t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--encode") == 0) return encode_stdin(argv[2]);
    const char *src = getenv("top_srcdir");
    if (!src) src = ".";
    snprintf(tok_path, sizeof tok_path, "%s/data/models/stories260K/tok512.bin", src);
    snprintf(corpus_dir, sizeof corpus_dir, "%s/data/lm_corpus", src);
    Suite *s = suite_create("tokenizer");
    /* Every case loads the shipped vocabulary before each test. */
    TCase *load = ds_check_case(s, "load", 60);
    tcase_add_test(load, test_load);
    TCase *encode = ds_check_case(s, "encode", 60);
    tcase_add_test(encode, test_encode_fixed);
    tcase_add_test(encode, test_merge_order);
    TCase *decode = ds_check_case(s, "decode", 60);
    tcase_add_test(decode, test_decode);
    TCase *roundtrip = ds_check_case(s, "roundtrip", 60);
    tcase_add_test(roundtrip, test_roundtrip_corpus);
    TCase *malformed = ds_check_case(s, "malformed", 60);
    tcase_add_test(malformed, test_malformed_files);
    TCase *all[] = {load, encode, decode, roundtrip, malformed};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tcase_add_checked_fixture(all[i], setup, teardown);
    return ds_check_run(s);
}
