/* Hugging Face tokenizer.json, the two kinds of the Llama family, byte-exact
 * with the reference (Hugging Face tokenizers as ported by @lenml/tokenizers;
 * vectors in tests/data/tokenizers):
 *  - SentencePiece-style BPE with byte fallback (Llama 2, Mistral): normalizer
 *    Prepend "▁" + Replace " " -> "▁", no pre-tokenizer, <0xNN> byte pieces for
 *    characters outside the vocabulary;
 *  - byte-level BPE (Llama 3): a Split pre-tokenizer (regex, PCRE2 in UTF +
 *    Unicode-property mode), ByteLevel byte-to-unicode map, ignore_merges.
 * Added tokens in the text are matched first (leftmost, longest) and never
 * normalized; each stretch of text between them is normalized, pre-tokenized
 * and merged on its own. The post-processor's special tokens (a
 * TemplateProcessing's single template, e.g. BOS) are added on request.
 * Decoding runs the file's decoder (Replace, ByteFallback, Fuse, Strip,
 * ByteLevel), then tokenizer_config.json's clean_up_tokenization_spaces when
 * that file sits next to tokenizer.json and asks for it (absent key: true, as
 * the reference). Invalid UTF-8 from byte pieces decodes to U+FFFD per
 * maximal invalid subsequence (WHATWG, as the reference).
 * Encoding is fast and gives the same ids as the reference's way
 * (ds_tok_hf_set_plain): a word cache (pre-token -> ids); Llama 3's split
 * pattern matched on ASCII letters and digits without PCRE2; a SentencePiece
 * section merged in chunks cut before each "▁" that no merge can join to the
 * character before it (read off the merges at load). bench/tokenizer.sh.
 * Errors: DS_EXIT_INPUT with one line "FILE: what is wrong" (other model
 * types, unknown normalizers/pre-tokenizers/decoders, broken merges, pieces
 * missing from the vocabulary) or "text: invalid UTF-8 at byte N". */
#ifndef DS_IO_HF_TOKENIZER_H
#define DS_IO_HF_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DS_TOK_HF_SPM, DS_TOK_HF_BYTELEVEL } ds_tok_hf_kind;

typedef struct ds_tok_hf ds_tok_hf;

/* Load PATH (a tokenizer.json) and the tokenizer_config.json beside it when
 * there is one; 0 and *OUT, or an exit code with ds_err set. */
int ds_tok_hf_load(const char *path, ds_tok_hf **out);
/* The same from texts in memory: JSON (LEN bytes) and CONFIG (CONFIG_LEN
 * bytes of tokenizer_config.json, NULL: none); PATH names it in errors. */
int ds_tok_hf_load_text(const char *path, const char *json, size_t len, const char *config, size_t config_len,
                        ds_tok_hf **out);
/* "DIR/tokenizer_config.json" for PATH "DIR/tokenizer.json" (malloc'd). */
char *ds_tok_hf_config_beside(const char *path);
void ds_tok_hf_free(ds_tok_hf *t);

ds_tok_hf_kind ds_tok_hf_kind_of(const ds_tok_hf *t);
/* Number of ids (the largest id + 1, added tokens included). */
int ds_tok_hf_n_ids(const ds_tok_hf *t);
/* The id of the piece S (vocabulary or added token), -1 when none. */
int ds_tok_hf_id(const ds_tok_hf *t, const char *s);
/* tokenizer_config.json's bos_token / eos_token id, -1 when not given. */
int ds_tok_hf_bos(const ds_tok_hf *t);
int ds_tok_hf_eos(const ds_tok_hf *t);
/* 1 when ID is a special added token (skipped by decode with SKIP_SPECIAL). */
int ds_tok_hf_is_special(const ds_tok_hf *t, int id);
/* The piece of ID as stored (NULL when ID is no piece). */
const char *ds_tok_hf_piece(const ds_tok_hf *t, int id);

/* Encode LEN bytes of TEXT (UTF-8); ADD_SPECIAL: with the post-processor's
 * special tokens. *IDS (malloc'd, free it) and *N; 0, or DS_EXIT_INPUT.
 * T keeps the encoder's scratch and word cache: one thread at a time. */
int ds_tok_hf_encode(const ds_tok_hf *t, const char *text, size_t len, int add_special, int32_t **ids,
                     size_t *n);
/* PLAIN 1: encode as the reference does: every pre-token found by the split
 * regex (PCRE2) and merged from scratch, a SentencePiece-kind section merged
 * as one word; 0 (the default): the fast ways above (same ids). For tests
 * and the fuzz target. */
void ds_tok_hf_set_plain(ds_tok_hf *t, int plain);
/* Decode N ids; SKIP_SPECIAL drops special added tokens. *TEXT (malloc'd,
 * NUL-terminated) and *LEN; 0, or DS_EXIT_INPUT for an id out of range. */
int ds_tok_hf_decode(const ds_tok_hf *t, const int32_t *ids, size_t n, int skip_special, char **text,
                     size_t *len);
#endif
