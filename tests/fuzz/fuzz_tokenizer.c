/* libFuzzer target: the llama2.c tokenizer reader and its encoder/decoder
 * (io/tokenizer.c; scripts/fuzz.sh tokenizer). Input: a 2-byte little-endian
 * vocab_size, then the tokenizer file (tok512.bin's layout). A file that loads
 * must encode a few texts with ids in range that decode again; a refused one
 * must be DS_EXIT_INPUT. tests/fuzz/replay runs tests/fuzz/tokenizer_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/tokenizer.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

static const char *const texts[] = {"", "Once upon a time", " a  b\n\t<0x0A> \xe2\x96\x81 \xff\x01z", "<s></s><unk>"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int vocab = data[0] | data[1] << 8;
    ds_tokenizer tok;
    int rc = ds_tokenizer_load_llama2c(fuzz_file(0, data + 2, size - 2, ".bin"), vocab, &tok);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    int ids[64];
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int n = ds_tokenizer_encode(&tok, texts[k], 1, 1, ids);
        if (n < 0 || n > (int)strlen(texts[k]) + 3) abort();
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok.vocab_size) abort();
        char *s = ds_tokenizer_decode_ids(&tok, ids, n, NULL);
        if (!s) abort();
        free(s);
        for (int i = 0; i < n; i++) {
            int len;
            (void)ds_tokenizer_decode(&tok, i ? ids[i - 1] : 1, ids[i], &len);
        }
    }
    int len;
    if (ds_tokenizer_decode(&tok, 1, tok.vocab_size, &len) != NULL) abort();
    ds_tokenizer_free(&tok);
    return 0;
}
