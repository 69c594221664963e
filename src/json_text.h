/* A JSON report for people (inspect's table form): scalars as "key: value",
 * objects as indented "key: value" blocks, arrays of objects as tables whose
 * columns are the first object's keys (numbers right-aligned, text left),
 * other arrays inline. Reals with 6 significant digits, true/false as
 * yes/no, null as "-". */
#ifndef DS_JSON_TEXT_H
#define DS_JSON_TEXT_H
#include <jansson.h>
#include <stdio.h>

void ds_json_print_text(FILE *f, const json_t *report);
#endif
