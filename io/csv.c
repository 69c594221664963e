/* RFC 4180 CSV reader (io/csv.h). */
#include "config.h"
#include "io/csv.h"
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

void ds_csv_free(ds_csv *csv)
{
    if (!csv) return;
    free(csv->path);
    free(csv->header);
    free(csv->cells);
    free(csv->line);
    free(csv->arena);
    memset(csv, 0, sizeof *csv);
}

static int line_of(const char *data, size_t pos)
{
    int ln = 1;
    for (size_t i = 0; i < pos; i++) ln += data[i] == '\n';
    return ln;
}

/* A line end at i: "\n", "\r\n", or a "\r" that ends the data. */
static size_t eol_len(const char *d, size_t i, size_t len)
{
    if (i >= len) return 0;
    if (d[i] == '\n') return 1;
    if (d[i] == '\r' && (i + 1 == len || d[i + 1] == '\n')) return i + 1 == len ? 1 : 2;
    return 0;
}

int ds_csv_parse(const char *name, const char *data, size_t len, ds_csv *csv)
{
    memset(csv, 0, sizeof *csv);
    const char *nul = memchr(data, 0, len);
    if (nul) return ds_err(DS_EXIT_INPUT, "%s:%d: NUL byte in a CSV file", name, line_of(data, (size_t)(nul - data)));
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) i = 3;

    /* Fields shrink or keep their size when unescaped, plus one NUL each;
     * there are at most len + 1 fields. */
    char *arena = ds_malloc(2 * len + 2), *w = arena;
    size_t nf = 0, fcap = 256, rcap = 64;
    char **fields = ds_malloc(fcap * sizeof *fields);
    int *lines = ds_malloc(rcap * sizeof *lines);
    int nrec = 0, ncols = -1, ln = 1, rc = 0;

    while (i < len) {
        size_t e = eol_len(data, i, len);
        if (e) { /* an empty line */
            i += e;
            ln++;
            continue;
        }
        int rec_line = ln;
        size_t rec_first = nf;
        for (;;) {
            char *f = w;
            if (i < len && data[i] == '"') {
                int open_line = ln;
                i++;
                for (;;) {
                    if (i >= len) {
                        rc = ds_err(DS_EXIT_INPUT, "%s:%d: unterminated quoted field (opened on this line)", name,
                                    open_line);
                        goto out;
                    }
                    char c = data[i];
                    if (c == '"') {
                        if (i + 1 < len && data[i + 1] == '"') {
                            *w++ = '"';
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    if (c == '\n') ln++;
                    *w++ = c;
                    i++;
                }
                if (i < len && data[i] != ',' && !eol_len(data, i, len)) {
                    rc = ds_err(DS_EXIT_INPUT, "%s:%d: unexpected character '%c' after a closing quote", name, ln,
                                data[i]);
                    goto out;
                }
            } else {
                while (i < len && data[i] != ',' && !eol_len(data, i, len)) {
                    if (data[i] == '"') {
                        rc = ds_err(DS_EXIT_INPUT, "%s:%d: quote inside an unquoted field (quote the field, double the quote)",
                                    name, ln);
                        goto out;
                    }
                    *w++ = data[i++];
                }
            }
            *w++ = 0;
            if (nf == fcap) fields = ds_realloc(fields, (fcap *= 2) * sizeof *fields);
            fields[nf++] = f;
            if (i < len && data[i] == ',') {
                i++;
                continue;
            }
            e = eol_len(data, i, len);
            i += e;
            ln += e > 0;
            break;
        }
        int n = (int)(nf - rec_first);
        if (ncols < 0) {
            ncols = n;
        } else if (n != ncols) {
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: %d fields, the header has %d", name, rec_line, n, ncols);
            goto out;
        }
        if (nrec == (int)rcap) lines = ds_realloc(lines, (rcap *= 2) * sizeof *lines);
        lines[nrec++] = rec_line;
    }
    if (ncols < 0) {
        rc = ds_err(DS_EXIT_INPUT, "%s: empty CSV file (no header)", name);
        goto out;
    }
    csv->path = ds_strdup(name);
    csv->ncols = ncols;
    csv->nrows = nrec - 1;
    csv->header = ds_malloc((size_t)ncols * sizeof *csv->header);
    memcpy(csv->header, fields, (size_t)ncols * sizeof *fields);
    csv->cells = ds_malloc((nf - (size_t)ncols + 1) * sizeof *csv->cells);
    memcpy(csv->cells, fields + ncols, (nf - (size_t)ncols) * sizeof *fields);
    csv->line = ds_malloc((size_t)nrec * sizeof *csv->line);
    memcpy(csv->line, lines + 1, (size_t)(nrec - 1) * sizeof *lines);
    csv->arena = arena;
    arena = NULL;
out:
    free(arena);
    free(fields);
    free(lines);
    return rc;
}

int ds_csv_read(const char *path, ds_csv *csv)
{
    memset(csv, 0, sizeof *csv);
    char *data;
    size_t len;
    int rc = ds_read_file(path, &data, &len);
    if (rc) return rc;
    rc = ds_csv_parse(path, data, len, csv);
    free(data);
    return rc;
}

int ds_csv_col(const ds_csv *csv, const char *name)
{
    for (int c = 0; c < csv->ncols; c++)
        if (strcmp(csv->header[c], name) == 0) return c;
    return -1;
}

int ds_csv_require_col(const ds_csv *csv, const char *name, int *col)
{
    *col = ds_csv_col(csv, name);
    if (*col >= 0) return 0;
    char have[512];
    size_t k = 0;
    have[0] = 0;
    for (int c = 0; c < csv->ncols && k + 4 < sizeof have; c++)
        k += (size_t)snprintf(have + k, sizeof have - k, "%s%s", c ? ", " : "", csv->header[c]);
    return ds_err(DS_EXIT_INPUT, "%s: no column \"%s\" in the header (have: %s)", csv->path, name, have);
}
