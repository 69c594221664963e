/* RFC 4180 CSV reader: quoted fields with "" escapes, commas and newlines
 * inside quotes, CRLF or LF line ends, an optional UTF-8 byte order mark.
 * The first record is the header; columns are found by name. Every record
 * must have as many fields as the header. Completely empty lines are
 * skipped (as Python's csv.DictReader does). Errors name the file and the
 * line: "FILE:LINE: unterminated quoted field (opened here)". */
#ifndef DS_IO_CSV_H
#define DS_IO_CSV_H
#include <stddef.h>

typedef struct {
    char *path;    /* the name used in messages */
    int ncols;
    int nrows;     /* records after the header */
    char **header; /* ncols names */
    char **cells;  /* nrows * ncols NUL-terminated fields, row-major */
    int *line;     /* first line (1-based) of each record, for messages */
    char *arena;   /* storage of every field */
} ds_csv;

/* Read and parse a whole file. 0 or DS_EXIT_INPUT with ds_err set; on error
 * nothing is left allocated. */
int ds_csv_read(const char *path, ds_csv *csv);
/* Parse len bytes of data; name is used in messages. */
int ds_csv_parse(const char *name, const char *data, size_t len, ds_csv *csv);
void ds_csv_free(ds_csv *csv);

/* Column index of a header name (exact match), or -1. */
int ds_csv_col(const ds_csv *csv, const char *name);
/* Like ds_csv_col, but a missing column is DS_EXIT_INPUT:
 * "FILE: no column "NAME" in the header (have: a, b, c)". */
int ds_csv_require_col(const ds_csv *csv, const char *name, int *col);
static inline const char *ds_csv_get(const ds_csv *csv, int row, int col)
{
    return csv->cells[(size_t)row * (size_t)csv->ncols + (size_t)col];
}
#endif
