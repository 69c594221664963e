/* libFuzzer target: the benchmark readers (eval/datasets.c on io/csv.c and
 * jansson; scripts/fuzz.sh datasets). The first byte picks the reader
 * (mod 6): TruthfulQA mc_task.json, TruthfulQA.csv, HarmBench CSV, AdvBench
 * CSV, XSTest CSV, MT-Bench question.jsonl; the rest is the file, written to
 * a tmpfs file. Each must load or refuse with DS_EXIT_INPUT; a loaded set
 * must hold non-NULL strings. tests/fuzz/replay runs tests/fuzz/datasets_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eval/datasets.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

static void need(const void *p)
{
    if (!p) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *const suffix[6] = {".json", ".csv", ".csv", ".csv", ".csv", ".jsonl"};
    int which = data[0] % 6, rc;
    const char *path = fuzz_file(which, data + 1, size - 1, suffix[which]);
    switch (which) {
    case 0: {
        ds_truthfulqa d;
        if (!(rc = ds_truthfulqa_load(path, &d))) {
            for (int i = 0; i < d.n; i++) {
                need(d.items[i].question);
                for (int k = 0; k < d.items[i].n_mc1; k++) need(d.items[i].mc1[k].text);
                for (int k = 0; k < d.items[i].n_mc2; k++) need(d.items[i].mc2[k].text);
            }
            ds_truthfulqa_free(&d);
        }
        break;
    }
    case 1: {
        ds_truthfulqa_csv d;
        if (!(rc = ds_truthfulqa_csv_load(path, &d))) ds_truthfulqa_csv_free(&d);
        break;
    }
    case 2: {
        ds_harmbench d;
        if (!(rc = ds_harmbench_load(path, &d))) ds_harmbench_free(&d);
        break;
    }
    case 3: {
        ds_advbench d;
        if (!(rc = ds_advbench_load(path, &d))) ds_advbench_free(&d);
        break;
    }
    case 4: {
        ds_xstest d;
        if (!(rc = ds_xstest_load(path, &d))) ds_xstest_free(&d);
        break;
    }
    default: {
        ds_mtbench d;
        if (!(rc = ds_mtbench_load(path, &d))) ds_mtbench_free(&d);
        break;
    }
    }
    if (rc && rc != DS_EXIT_INPUT) abort();
    return 0;
}
