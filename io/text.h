/* Plain-text corpora as documents: split on blank lines or on the
 * "<|endoftext|>" marker (TinyStories' separator). */
#ifndef DS_IO_TEXT_H
#define DS_IO_TEXT_H

#define DS_TEXT_EOT "<|endoftext|>"

typedef struct {
    int n;
    char **docs; /* n NUL-terminated documents, trimmed of surrounding whitespace */
} ds_text_docs;

/* Split text into documents; empty ones are dropped. */
void ds_text_split(const char *text, ds_text_docs *out);
/* Read a file and split it; DS_EXIT_INPUT when unreadable or without any
 * document. */
int ds_text_load(const char *path, ds_text_docs *out);
/* The same, and when sha256 is not NULL the hex SHA-256 of the file's bytes. */
int ds_text_load_sha(const char *path, ds_text_docs *out, char sha256[65]);
void ds_text_docs_free(ds_text_docs *d);
#endif
