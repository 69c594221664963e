/* config.json files beside safetensors (io/hf_config.h). */
#include "io/hf_config.h"
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/safetensors.h"

char *ds_hf_config_beside(const char *file)
{
    char *d = ds_strdup(file);
    const char *dir = dirname(d); /* d itself, or "." for a name without a folder */
    size_t n = strlen(dir) + 16;
    char *path = ds_malloc(n);
    snprintf(path, n, "%s/config.json", dir);
    free(d);
    return path;
}

int ds_hf_config_write(const char *path, const char *tmp, const ds_config *cfg, ds_dtype dt)
{
    char *text = ds_hf_config_json(cfg, dt);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f || fputs(text, f) < 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    if (f && fclose(f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    free(text);
    return rc;
}
