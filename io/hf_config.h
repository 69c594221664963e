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

/* An export's files staged together (docs/robustness.md "export: the set of
 * files"): every file is written into the folder DIR/.NAME.export.tmp/ beside
 * DIR/NAME (the .safetensors output), then ds_hf_stage_commit writes the
 * marker .deltasoup-commit there (the list of files, in rename order, and the
 * input's content_sha256), renames each file into DIR (config.json last),
 * removes the marker and the folder. Rank 0 only, serial. */
/* "DIR/.NAME.export.tmp" for the output DIR/NAME (malloc'ed). */
char *ds_hf_stage_dir(const char *out);
/* "DIR/.NAME.export.tmp/BASE" for the output DIR/NAME and a file name BASE of the set. */
char *ds_hf_stage_file(const char *out, const char *base);
/* Before anything else: finish or discard what an interrupted export of out
 * left. With the marker, the staged files left are renamed into place (roll
 * forward: the new set) and *same_input is set when the marker's input hash is
 * input_sha (non-empty); without it, the staging folder is removed (the old
 * set stays). A note on stderr says which. 0 or DS_EXIT_OUTPUT. */
int ds_hf_stage_recover(const char *out, const char *input_sha, int *same_input);
/* Create the (empty) staging folder. 0 or DS_EXIT_OUTPUT. */
int ds_hf_stage_create(const char *out);
/* Remove the staging folder and what it holds (a failed export). */
void ds_hf_stage_discard(const char *out);
/* Commit the staged files names[0..n-1] (base names, in rename order; the
 * last one is config.json): fsync them, write the marker, rename, clean up. */
int ds_hf_stage_commit(const char *out, const char *const *names, int n, const char *input_sha);
/* Fault injection for tests/reliability/export_kill.sh: SIGKILL this process
 * when the environment's DS_TEST_FAIL_AT equals point. */
void ds_hf_test_fail_at(const char *point);
#endif
