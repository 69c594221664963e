/* Document splitting of plain-text corpora (io/text.h). */
#include "config.h"
#include "io/text.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"
#include "src/hash.h"

/* Append [b, e) trimmed, when not empty. */
static void add_doc(ds_text_docs *d, const char *b, const char *e)
{
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (b == e) return;
    d->docs = ds_realloc(d->docs, (size_t)(d->n + 1) * sizeof *d->docs);
    char *s = ds_malloc((size_t)(e - b) + 1);
    memcpy(s, b, (size_t)(e - b));
    s[e - b] = 0;
    d->docs[d->n++] = s;
}

/* Is the line starting at p (up to '\n' or end) only whitespace? */
static int blank_line(const char *p, const char *end)
{
    for (; p < end && *p != '\n'; p++)
        if (!isspace((unsigned char)*p)) return 0;
    return 1;
}

void ds_text_split(const char *text, ds_text_docs *out)
{
    out->n = 0;
    out->docs = NULL;
    const size_t mlen = strlen(DS_TEXT_EOT);
    const char *seg = text;
    for (;;) {
        const char *mark = strstr(seg, DS_TEXT_EOT);
        const char *end = mark ? mark : seg + strlen(seg);
        /* blank lines inside the segment end documents too */
        const char *doc = seg, *line = seg;
        while (line < end) {
            const char *nl = memchr(line, '\n', (size_t)(end - line));
            const char *next = nl ? nl + 1 : end;
            if (line > doc && blank_line(line, end)) {
                add_doc(out, doc, line);
                doc = next;
            }
            line = next;
        }
        add_doc(out, doc, end);
        if (!mark) break;
        seg = mark + mlen;
    }
}

int ds_text_load(const char *path, ds_text_docs *out) { return ds_text_load_sha(path, out, NULL); }

int ds_text_load_sha(const char *path, ds_text_docs *out, char sha256[65])
{
    char *text;
    size_t len;
    out->n = 0;
    out->docs = NULL;
    int rc = ds_read_file(path, &text, &len);
    if (rc) return rc;
    if (sha256) {
        ds_digest d;
        ds_sha256_buf(text, len, &d);
        ds_digest_hex(&d, sha256);
    }
    const size_t nul = strlen(text);
    if (nul != len) {
        free(text);
        return ds_err(DS_EXIT_INPUT, "%s: not a text file (NUL byte at offset %zu)", path, nul);
    }
    ds_text_split(text, out);
    free(text);
    if (out->n == 0) return ds_err(DS_EXIT_INPUT, "%s: no documents (empty or only whitespace)", path);
    return 0;
}

void ds_text_docs_free(ds_text_docs *d)
{
    for (int i = 0; i < d->n; i++) free(d->docs[i]);
    free(d->docs);
    d->docs = NULL;
    d->n = 0;
}
