/* libFuzzer target: the safetensors header parser on arbitrary file images
 * (scripts/fuzz.sh builds and runs it). Every input must give either a valid
 * header or a clean DS_EXIT_INPUT error; sanitizers catch the rest. */
#include "config.h"
#include <stdlib.h>
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_st_header h;
    int rc = ds_st_parse("fuzz", data, size, &h);
    if (rc == 0) {
        /* A header that passed must describe a consistent layout. */
        for (int i = 0; i < h.n; i++)
            if (h.tensors[i].end > h.data_len || h.tensors[i].end - h.tensors[i].begin != ds_tinfo_bytes(&h.tensors[i].info))
                abort();
        ds_st_header_free(&h);
    } else if (rc != DS_EXIT_INPUT) {
        abort();
    }
    return 0;
}
