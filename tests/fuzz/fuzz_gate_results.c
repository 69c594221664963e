/* libFuzzer target: the gate's reader of eval results JSON
 * (io/gate_results.c: ds_gate_results_load; scripts/fuzz.sh gate_results).
 * The input is the file (tmpfs), read with and without a wanted delta; it
 * loads or is refused with DS_EXIT_INPUT (DS_EXIT_USAGE: several models
 * and none wanted); loaded rows have task, data and
 * metric strings and can be found again. tests/fuzz/replay runs
 * tests/fuzz/gate_results_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/gate_results.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, data, size, ".json");
    static const char *const want[] = {NULL, "", "a.bd.h5", "demo-out/tqa.bd.h5"};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        ds_gate_results r;
        int rc = ds_gate_results_load(path, "--baseline-delta", want[k], &r);
        if (rc) {
            if (rc != DS_EXIT_INPUT && rc != DS_EXIT_USAGE) abort(); /* usage: several models, none chosen */
            ds_gate_results_free(&r);
            continue;
        }
        for (int i = 0; i < r.n; i++) {
            const ds_gate_row *g = &r.rows[i];
            if (!g->task || !g->data || !g->metric) abort();
            if (!ds_gate_results_find(&r, g->task, g->data, g->metric)) abort();
        }
        ds_gate_results_free(&r);
    }
    return 0;
}
