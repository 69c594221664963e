/* libFuzzer target: the llama2.c legacy checkpoint reader (io/llama2c.c;
 * scripts/fuzz.sh llama2c). The input is the file: it is written to a tmpfs
 * file and opened with ds_llama2c_open; a file that opens must have the size
 * its header implies and every Hugging Face tensor of its config must read
 * (plus one unknown name, refused). Anything else must be DS_EXIT_INPUT.
 * tests/fuzz/replay (make check) runs tests/fuzz/llama2c_corpus through it. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include "io/h5_model.h"
#include "io/llama2c.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_llama2c *f;
    int rc = ds_llama2c_open(fuzz_file(0, data, size, ".bin"), &f);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    const ds_config *c = ds_llama2c_config(f);
    if (ds_llama2c_file_size(c) != size) abort();
    ds_tinfo *t;
    int n = ds_model_llama_tensors(c, DS_DTYPE_F32, &t);
    for (int i = 0; i < n; i++) {
        int64_t numel = ds_tinfo_numel(&t[i]);
        if (numel < 0 || (uint64_t)numel * 4 > size) abort(); /* every tensor lies in the file */
        float *buf = malloc((size_t)numel * sizeof *buf + 1);
        if (ds_llama2c_read(f, t[i].name, buf) != 0) abort();
        free(buf);
    }
    float x;
    if (ds_llama2c_read(f, "model.layers.999999.bogus", &x) == 0) abort();
    free(t);
    ds_llama2c_close(f);
    return 0;
}
