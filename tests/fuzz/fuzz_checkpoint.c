/* libFuzzer target: the resumable-job checkpoint reader (src/checkpoint.c:
 * ds_ckpt_read; scripts/fuzz.sh checkpoint). The input is a checkpoint
 * without its SHA-256 trailer, which the target appends (the reader checks it
 * first, so mutations would otherwise never pass it); with a first byte of
 * '!' the input is taken whole (trailer and all). A checkpoint that reads must
 * write back, read again and match itself; its arrays must be readable as
 * recorded. tests/fuzz/replay runs tests/fuzz/checkpoint_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "src/checkpoint.h"
#include "src/ds.h"
#include "src/hash.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path;
    if (size && data[0] == '!') {
        path = fuzz_file(0, data + 1, size - 1, ".ckpt");
    } else {
        uint8_t *b = malloc(size + 32);
        if (size) memcpy(b, data, size);
        ds_digest d;
        ds_sha256_buf(b, size, &d);
        memcpy(b + size, d.b, 32);
        path = fuzz_file(0, b, size + 32, ".ckpt");
        free(b);
    }
    ds_ckpt *c;
    int rc = ds_ckpt_read(path, &c);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    int64_t v;
    (void)ds_ckpt_get_int(c, "step", &v);
    (void)ds_ckpt_get_int(c, "done", &v);
    float f[4];
    (void)ds_ckpt_get_array(c, "m", DS_DTYPE_F32, 4, f);
    const char *path2 = fuzz_file(1, (const uint8_t *)"", 0, ".ckpt");
    ds_ckpt *c2;
    if (ds_ckpt_write(c, path2) != 0 || ds_ckpt_read(path2, &c2) != 0) abort();
    if (ds_ckpt_match(c, c2, path2) != 0) abort();
    ds_ckpt_free(c2);
    ds_ckpt_free(c);
    return 0;
}
