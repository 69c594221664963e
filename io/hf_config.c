/* config.json files beside safetensors (io/hf_config.h). */
#include "io/hf_config.h"
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/safetensors.h"

char *ds_hf_file_beside(const char *file, const char *name)
{
    char *d = ds_strdup(file);
    const char *dir = dirname(d); /* d itself, or "." for a name without a folder */
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = ds_malloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    free(d);
    return path;
}

char *ds_hf_config_beside(const char *file) { return ds_hf_file_beside(file, "config.json"); }

int ds_hf_bytes_write(const char *path, const char *tmp, const char *data, size_t len)
{
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f || (len && fwrite(data, 1, len, f) != len)) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    if (f && fclose(f) != 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot write %s", path, tmp);
    return rc;
}

int ds_hf_config_write(const char *path, const char *tmp, const ds_config *cfg, ds_dtype dt)
{
    char *text = ds_hf_config_json(cfg, dt);
    int rc = ds_hf_bytes_write(path, tmp, text, strlen(text));
    free(text);
    return rc;
}
