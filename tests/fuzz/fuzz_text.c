/* libFuzzer target: the text-corpus reader (io/text.c; scripts/fuzz.sh text):
 * ds_text_load_sha on a tmpfs file must split as ds_text_split does on the
 * same bytes (text without NUL), into trimmed, non-empty documents without
 * the <|endoftext|> separator. tests/fuzz/replay runs tests/fuzz/text_corpus. */
#include "config.h"
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/text.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_text_docs d;
    char sha[65];
    int rc = ds_text_load_sha(fuzz_file(0, data, size, ".txt"), &d, sha);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    if (strlen(sha) != 64 || d.n < 0) abort();
    for (int i = 0; i < d.n; i++) {
        size_t n = strlen(d.docs[i]);
        if (strstr(d.docs[i], DS_TEXT_EOT)) abort();
        if (n && (isspace((unsigned char)d.docs[i][0]) || isspace((unsigned char)d.docs[i][n - 1]))) abort();
    }
    if (!memchr(data, 0, size)) {
        char *s = malloc(size + 1);
        memcpy(s, data, size);
        s[size] = 0;
        ds_text_docs e;
        ds_text_split(s, &e);
        if (e.n != d.n) abort();
        for (int i = 0; i < d.n; i++)
            if (strcmp(e.docs[i], d.docs[i]) != 0) abort();
        ds_text_docs_free(&e);
        free(s);
    }
    ds_text_docs_free(&d);
    return 0;
}
