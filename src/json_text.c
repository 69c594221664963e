/* A JSON report for people (src/json_text.h). */
#include "src/json_text.h"
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

static void value_str(const json_t *v, char *buf, size_t n)
{
    switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, n, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, n, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, n, "%.6g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, n, "yes"); break;
    case JSON_FALSE: snprintf(buf, n, "no"); break;
    case JSON_NULL: snprintf(buf, n, "-"); break;
    case JSON_ARRAY: {
        size_t o = (size_t)snprintf(buf, n, "[");
        for (size_t i = 0; i < json_array_size(v) && o < n; i++) {
            char e[64];
            value_str(json_array_get(v, i), e, sizeof e);
            o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", e);
        }
        if (o < n) snprintf(buf + o, n - o, "]");
        break;
    }
    default: snprintf(buf, n, "{...}");
    }
}

/* An array of objects as a table: columns are the first object's keys. */
static void print_table(FILE *f, const json_t *arr)
{
    const json_t *first = json_array_get(arr, 0);
    size_t nc = json_object_size(first), nr = json_array_size(arr);
    const char **keys = ds_calloc(nc ? nc : 1, sizeof(char *));
    int *w = ds_calloc(nc ? nc : 1, sizeof(int));
    size_t c = 0;
    const char *key;
    const json_t *v;
    char cell[512];
    json_object_foreach((json_t *)first, key, v)
    {
        keys[c] = key;
        w[c] = (int)strlen(key);
        c++;
    }
    for (size_t r = 0; r < nr; r++)
        for (c = 0; c < nc; c++) {
            const json_t *x = json_object_get(json_array_get(arr, r), keys[c]);
            value_str(x ? x : json_null(), cell, sizeof cell);
            if ((int)strlen(cell) > w[c]) w[c] = (int)strlen(cell);
        }
    fprintf(f, " ");
    for (c = 0; c < nc; c++) fprintf(f, " %-*s", w[c], keys[c]);
    fprintf(f, "\n");
    for (size_t r = 0; r < nr; r++) {
        fprintf(f, " ");
        for (c = 0; c < nc; c++) {
            const json_t *x = json_object_get(json_array_get(arr, r), keys[c]);
            value_str(x ? x : json_null(), cell, sizeof cell);
            /* Numbers right-aligned, text left-aligned. */
            int num = x && (json_is_number(x) || json_is_null(x));
            fprintf(f, num ? " %*s" : " %-*s", w[c], cell);
        }
        fprintf(f, "\n");
    }
    free(keys);
    free(w);
}

void ds_json_print_text(FILE *f, const json_t *report)
{
    const char *key;
    const json_t *v;
    char buf[1024];
    json_object_foreach((json_t *)report, key, v)
    {
        if (json_is_object(v)) {
            fprintf(f, "%s:\n", key);
            const char *k2;
            const json_t *v2;
            json_object_foreach((json_t *)v, k2, v2)
            {
                value_str(v2, buf, sizeof buf);
                fprintf(f, "  %s: %s\n", k2, buf);
            }
        } else if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
            fprintf(f, "%s:\n", key);
            print_table(f, v);
        } else {
            value_str(v, buf, sizeof buf);
            fprintf(f, "%s: %s\n", key, buf);
        }
    }
}
