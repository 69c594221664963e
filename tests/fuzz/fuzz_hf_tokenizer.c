/* libFuzzer target: the Hugging Face tokenizer.json reader and encoder
 * (io/hf_tokenizer.c; scripts/fuzz.sh hf_tokenizer builds and runs it).
 * An input is JSON \0 TEXT \0 CONFIG: a tokenizer.json, a text to encode and
 * a tokenizer_config.json (each part may be absent). Every input must give a
 * tokenizer or a clean DS_EXIT_INPUT error; a tokenizer must encode TEXT
 * (valid UTF-8) with ids in range, the same ids plain and through the word
 * cache and chunks (twice: the cache cold, then warm), or refuse invalid
 * UTF-8 both ways; those ids and ids made from TEXT's bytes decode or give
 * DS_EXIT_INPUT. Sanitizers catch the rest. test_hf_tokenizer replays the
 * committed corpus (tests/fuzz/hf_tokenizer_corpus) through this function. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_tokenizer.h"
#include "src/ds.h"

static void encode_check(ds_tok_hf *t, const char *text, size_t len, int special)
{
    int32_t *want, *got;
    size_t nw, ng;
    ds_tok_hf_set_plain(t, 1);
    int rw = ds_tok_hf_encode(t, text, len, special, &want, &nw);
    if (rw != 0 && rw != DS_EXIT_INPUT) abort();
    for (int pass = 0; pass < 2; pass++) {
        ds_tok_hf_set_plain(t, 0);
        int rg = ds_tok_hf_encode(t, text, len, special, &got, &ng);
        if (rg != rw) abort();
        if (rg) continue;
        if (ng != nw || (nw && memcmp(got, want, nw * sizeof *got) != 0)) abort();
        free(got);
    }
    if (rw) return;
    for (size_t i = 0; i < nw; i++)
        if (want[i] < 0 || want[i] >= ds_tok_hf_n_ids(t) || !ds_tok_hf_piece(t, want[i])) abort();
    for (int skip = 0; skip < 2; skip++) {
        char *s;
        size_t n;
        if (ds_tok_hf_decode(t, want, nw, skip, &s, &n) != 0 || strlen(s) > n) abort();
        free(s);
    }
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data, *text = "", *config = NULL;
    size_t jlen = size, tlen = 0, clen = 0;
    const char *z = memchr(json, 0, size);
    if (z) {
        jlen = (size_t)(z - json);
        text = z + 1;
        tlen = size - jlen - 1;
        const char *z2 = memchr(text, 0, tlen);
        if (z2) {
            config = z2 + 1;
            clen = tlen - (size_t)(z2 - text) - 1;
            tlen = (size_t)(z2 - text);
        }
    }
    ds_tok_hf *t = NULL;
    int rc = ds_tok_hf_load_text("fuzz.json", json, jlen, config, clen, &t);
    if (rc) {
        if (rc != DS_EXIT_INPUT || t) abort();
        return 0;
    }
    encode_check(t, text, tlen, 1);
    encode_check(t, text, tlen, 0);
    /* arbitrary ids: from the text's bytes, some out of range */
    int32_t ids[64];
    size_t n = tlen < 64 ? tlen : 64;
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((unsigned char)text[i] * 131) % (ds_tok_hf_n_ids(t) + 2) - 1;
    for (int skip = 0; skip < 2; skip++) {
        char *s;
        size_t len;
        rc = ds_tok_hf_decode(t, ids, n, skip, &s, &len);
        if (rc == 0) free(s);
        else if (rc != DS_EXIT_INPUT) abort();
    }
    ds_tok_hf_free(t);
    return 0;
}
