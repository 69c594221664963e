/* Hugging Face config.json as a file beside a model's safetensors (import
 * reads it, export writes it); its content is io/safetensors.h's. */
#ifndef DS_IO_HF_CONFIG_H
#define DS_IO_HF_CONFIG_H
#include "src/ds.h"

/* "DIR/config.json" for a file DIR/NAME (malloc'ed). */
char *ds_hf_config_beside(const char *file);
/* "DIR/NAME" for a file DIR/OTHER (malloc'ed). */
char *ds_hf_file_beside(const char *file, const char *name);
/* Write len bytes to the file tmp; errors name path, the output it stands for. */
int ds_hf_bytes_write(const char *path, const char *tmp, const char *data, size_t len);
/* Write the config.json text of cfg (model dtype dt) to the file tmp;
 * errors name path, the output it stands for. */
int ds_hf_config_write(const char *path, const char *tmp, const ds_config *cfg, ds_dtype dt);
#endif
