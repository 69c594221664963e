/* libFuzzer target: the HDF5 model checkpoint reader (io/h5_model.c,
 * io/h5.c; scripts/fuzz.sh h5_model). The input is the file: written to a
 * tmpfs file and opened by the real reader, ds_model_open under
 * MPI_COMM_SELF (and ds_model_is_model, serial). A file that opens must have
 * a config that passes ds_config_check and tensors that read (as F32 and as
 * stored, whole and by rows), and its tokenizer, when it has one, must load;
 * anything else is DS_EXIT_INPUT. Sanitizers catch the rest (HDF5 itself is
 * not instrumented). tests/fuzz/replay runs tests/fuzz/h5_model_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_model.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"
#include "tests/fuzz/fuzz_h5_mpi.h"

#define MAX_NUMEL (1 << 22) /* larger tensors (declared, not stored) are skipped: memory, not a bug */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, data, size, ".h5");
    (void)ds_model_is_model(path);
    ds_model_file *f;
    int rc = ds_model_open(path, MPI_COMM_SELF, &f);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    const ds_model_meta *m = ds_model_get_meta(f);
    if (ds_config_check(&m->cfg, path) != 0) abort();
    for (int i = 0; i < m->n_tensors; i++) {
        const ds_tinfo *t = &m->tensors[i];
        int64_t numel = ds_tinfo_numel(t);
        if (numel < 0 || numel > MAX_NUMEL || ds_model_find(f, t->name) != i) continue;
        float *buf = malloc((size_t)numel * sizeof *buf + 1);
        rc = ds_model_read_tensor(f, t->name, DS_DTYPE_F32, buf);
        if (rc && rc != DS_EXIT_INPUT) abort();
        rc = ds_model_read_tensor(f, t->name, t->dtype, buf);
        if (rc && rc != DS_EXIT_INPUT) abort();
        if (t->ndim >= 1 && t->shape[0] > 0) {
            rc = ds_model_read_rows(f, t->name, DS_DTYPE_F32, t->shape[0] - 1, 1, buf);
            if (rc && rc != DS_EXIT_INPUT) abort();
        }
        free(buf);
    }
    if (m->has_tokenizer) {
        ds_tokenizer tok;
        rc = ds_model_read_tokenizer(f, &tok);
        if (rc && rc != DS_EXIT_INPUT) abort();
        if (!rc) ds_tokenizer_free(&tok);
    }
    ds_model_close(f);
    return 0;
}
