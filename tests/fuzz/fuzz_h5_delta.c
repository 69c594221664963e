/* libFuzzer target: the HDF5 delta file reader (io/h5_delta.c, io/h5.c;
 * scripts/fuzz.sh h5_delta). The input is the file: written to a tmpfs file
 * and opened by the real reader, ds_delta_open under MPI_COMM_SELF (and
 * ds_delta_is_delta, serial). A file that opens must have entries whose
 * signs and scales (coded) or dense data read, or are refused with
 * DS_EXIT_INPUT; anything else is DS_EXIT_INPUT. Sanitizers catch the rest.
 * tests/fuzz/replay runs tests/fuzz/h5_delta_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_delta.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"
#include "tests/fuzz/fuzz_h5_mpi.h"

#define MAX_NUMEL (1 << 22) /* larger entries (declared, not stored) are skipped: memory, not a bug */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, data, size, ".bd.h5");
    (void)ds_delta_is_delta(path);
    ds_delta_file *f;
    int rc = ds_delta_open(path, MPI_COMM_SELF, &f);
    if (rc) {
        if (rc != DS_EXIT_INPUT) abort();
        return 0;
    }
    const ds_delta_meta *m = ds_delta_get_meta(f);
    if (ds_config_check(&m->cfg, path) != 0) abort();
    for (int i = 0; i < m->n; i++) {
        const ds_delta_entry *e = &m->entries[i];
        if (ds_delta_find(f, e->t.name) != i) abort();
        if (e->coded) {
            if (e->rows < 0 || e->words_per_row < 0 || e->n_scales < 0) abort();
            if (e->rows > MAX_NUMEL || e->words_per_row > MAX_NUMEL || e->rows * e->words_per_row > MAX_NUMEL ||
                e->n_scales > MAX_NUMEL)
                continue;
            uint64_t *bits = malloc((size_t)(e->rows * e->words_per_row) * sizeof *bits + 1);
            float *sc = malloc((size_t)e->n_scales * sizeof *sc + 1);
            rc = ds_delta_read_signs(f, i, bits);
            if (rc && rc != DS_EXIT_INPUT) abort();
            rc = ds_delta_read_scales(f, i, sc);
            if (rc && rc != DS_EXIT_INPUT) abort();
            free(bits);
            free(sc);
        } else {
            int64_t numel = ds_tinfo_numel(&e->t);
            if (numel < 0 || numel > MAX_NUMEL) continue;
            float *buf = malloc((size_t)numel * sizeof *buf + 1);
            rc = ds_delta_read_dense(f, i, DS_DTYPE_F32, buf);
            if (rc && rc != DS_EXIT_INPUT) abort();
            free(buf);
        }
    }
    ds_delta_close(f);
    return 0;
}
