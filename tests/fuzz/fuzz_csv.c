/* libFuzzer target: the CSV reader (io/csv.c; scripts/fuzz.sh csv), both
 * from memory (ds_csv_parse) and from a tmpfs file (ds_csv_read): the same
 * verdict both ways; a table that parses has nrows * ncols NUL-terminated
 * fields and lines in order. tests/fuzz/replay runs tests/fuzz/csv_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/csv.h"
#include "src/ds.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_csv a, b;
    int ra = ds_csv_parse("fuzz.csv", (const char *)data, size, &a);
    int rb = ds_csv_read(fuzz_file(0, data, size, ".csv"), &b);
    if (ra != rb || (ra && ra != DS_EXIT_INPUT)) abort();
    if (ra) return 0;
    if (a.ncols != b.ncols || a.nrows != b.nrows || a.ncols < 1 || a.nrows < 0) abort();
    for (int j = 0; j < a.ncols; j++) {
        if (strcmp(a.header[j], b.header[j]) != 0) abort();
        int c = ds_csv_col(&a, a.header[j]);
        if (c < 0 || c > j || strcmp(a.header[c], a.header[j]) != 0) abort();
    }
    for (int r = 0; r < a.nrows; r++) {
        if (a.line[r] < 2 || (r && a.line[r] <= a.line[r - 1]) || a.line[r] != b.line[r]) abort();
        for (int j = 0; j < a.ncols; j++)
            if (strcmp(ds_csv_get(&a, r, j), ds_csv_get(&b, r, j)) != 0) abort();
    }
    int col;
    (void)ds_csv_require_col(&a, "question", &col);
    ds_csv_free(&a);
    ds_csv_free(&b);
    return 0;
}
