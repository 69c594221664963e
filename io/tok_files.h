/* A Hugging Face tokenizer as the bytes of its files (tokenizer.json and
 * tokenizer_config.json): read from a folder, parsed into a ds_tokenizer,
 * and kept beside it so that a checkpoint stores them whole (io/h5_model.h)
 * and export writes them back byte-identical. */
#ifndef DS_IO_TOK_FILES_H
#define DS_IO_TOK_FILES_H
#include <stddef.h>
#include "io/tokenizer.h"

/* The fields of tokenizer_config.json that a checkpoint records. */
typedef struct {
    char *bos_token, *eos_token; /* "" when not given */
    int add_bos_token;           /* 1, 0, or -1 when not given */
    char *chat_template;         /* the Jinja text, NULL when none */
} ds_tok_config;

void ds_tok_files_free(ds_tok_files *tf);
/* Copy src into dst (malloc'd). */
void ds_tok_files_copy(ds_tok_files *dst, const ds_tok_files *src);
/* Read PATH (a tokenizer.json) and the tokenizer_config.json beside it
 * when there is one. */
int ds_tok_files_read(const char *path, ds_tok_files *tf);
/* tokenizer_config.json's fields (all empty without the file); WHAT names
 * the file in messages. bos_token/eos_token may be strings or
 * {"content": ...} objects; chat_template a string or a list of
 * {"name", "template"} (the one named "default", else the first). */
int ds_tok_config_parse(const char *what, const ds_tok_files *tf, ds_tok_config *c);
void ds_tok_config_free(ds_tok_config *c);

/* Build tok from the files (WHAT names them in messages): the tokenizer,
 * with at most vocab_size ids (vocab_size <= 0: any), bos/eos from
 * tokenizer_config.json, tok->chat_template set to the name of the built-in
 * template its chat_template equals ("" when none does; chat_template_other
 * when it has one that is no built-in's), and a copy of the bytes in
 * tok->files. */
int ds_tok_files_load(const char *what, const ds_tok_files *tf, int vocab_size, ds_tokenizer *tok);
/* The files a Hugging Face tok was built from (tok->files), or NULL. */
const ds_tok_files *ds_tok_files_of(const ds_tokenizer *tok);
#endif
