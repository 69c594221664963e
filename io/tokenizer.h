/* SentencePiece-style BPE vocabulary (llama2.c tokenizer format) and
 * encode/decode. Ids 0,1,2 = <unk>,<s>,</s>; 3..258 = byte fallback.
 *
 * Encoding follows llama2.c's run.c: a dummy space is prepended to non-empty
 * text, the text is split into UTF-8 codepoints (a lead byte plus at most 3
 * continuation bytes), each codepoint is looked up as a piece, else each of
 * its bytes becomes id 3 + byte; then the adjacent pair whose concatenated
 * piece text is in the vocabulary with the highest score is merged (leftmost
 * on ties), repeatedly. A heap makes this O(n log n) with the same result as
 * run.c's O(n^2) scan. After loading, encode and decode only read the
 * tokenizer, so threads may share one. */
#ifndef DS_IO_TOKENIZER_H
#define DS_IO_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "src/chat.h"

struct ds_tok_hf;

/* A Hugging Face tokenizer's files as bytes: tokenizer.json and
 * tokenizer_config.json (config NULL: none). io/tok_files.h reads them. */
typedef struct {
    char *json;
    size_t json_len;
    char *config;
    size_t config_len;
} ds_tok_files;

typedef struct {
    int vocab_size;
    int max_token_length;
    char **pieces;  /* vocab_size byte strings, each NUL-terminated */
    int *lengths;   /* byte length of each piece (the file's length field) */
    float *scores;  /* merge scores (finite) */
    void *index;    /* private: piece -> id hash and byte-piece table */
    /* A Hugging Face tokenizer.json (io/hf_tokenizer.h) when not NULL:
     * encode and decode go there, and pieces/lengths/scores/index are NULL
     * (vocab_size is its number of ids, max_token_length 0). */
    struct ds_tok_hf *hf;
    int bos_id, eos_id; /* BOS and EOS (llama2.c: 1 and 2; Hugging Face: tokenizer_config.json's, -1: none) */
    char chat_template[16]; /* the built-in chat template (src/chat.h) the model's own equals; "" none */
    int chat_template_other; /* 1: the model has a chat template, but no built-in's (chat_template "") */
    ds_tok_files files; /* Hugging Face kind: the bytes it was built from (a checkpoint stores them, export
                           writes them back); freed with the tokenizer */
} ds_tokenizer;

#define DS_TOK_UNK 0
#define DS_TOK_BOS 1
#define DS_TOK_EOS 2
#define DS_TOK_BYTE0 3 /* id of <0x00>; byte b falls back to DS_TOK_BYTE0 + b */

/* Load a llama2.c tokenizer file holding exactly vocab_size tokens
 * (vocab_size <= 0: as many as the file holds). Truncated files, absurd
 * lengths, non-finite scores and trailing bytes are DS_EXIT_INPUT errors
 * naming the file and the token index. 0 or a ds_exit code. */
int ds_tokenizer_load_llama2c(const char *path, int vocab_size, ds_tokenizer *tok);
/* Build from pieces/scores (takes copies). lengths may be NULL (strlen). */
int ds_tokenizer_from_arrays(int vocab_size, int max_token_length, const char *const *pieces,
                             const int *lengths, const float *scores, ds_tokenizer *tok);
/* Wrap a loaded Hugging Face tokenizer (TOK takes it over; freed with TOK). */
void ds_tokenizer_from_hf(struct ds_tok_hf *hf, ds_tokenizer *tok);
/* Load PATH by its content: a tokenizer.json (text starting with '{', with
 * the tokenizer_config.json beside it, whose chat_template sets
 * chat_template when it is a built-in's) or a llama2.c tokenizer file. */
int ds_tokenizer_load(const char *path, int vocab_size, ds_tokenizer *tok);
void ds_tokenizer_free(ds_tokenizer *tok);

/* The chat template to use for OPT: "auto" -> the recorded one, else
 * "none"; a built-in's name (src/chat.h) -> itself. A template other than
 * none needs a Hugging Face tokenizer (a llama2.c one has no special-token
 * texts): DS_EXIT_INPUT. An unknown name: DS_EXIT_USAGE naming OPTION. 0
 * and *NAME (static), or the code with ds_err set. */
int ds_tokenizer_chat_template(const ds_tokenizer *tok, const char *opt, const char *option, const char **name);
/* Render N messages (src/chat.h) with the built-in TEMPLATE and the tokenizer's BOS/EOS
 * texts (add_generation_prompt) and encode the text as Hugging Face's
 * apply_chat_template does: without the post-processor's specials (the
 * template writes them); for "none" the plain prompt, with them when
 * ADD_SPECIAL. *IDS (malloc'd) and *N_IDS; 0, or DS_EXIT_INPUT (a message
 * list the template rejects, invalid UTF-8). */
int ds_tokenizer_encode_chat(ds_tokenizer *tok, const char *tmpl, const ds_chat_msg *msgs, int n, int add_special,
                             int **ids, int *n_ids);

/* The ids that end a generated answer: eos_id, bos_id, and the special
 * tokens <|eot_id|> (Llama 3's end of turn) and <|im_end|> (ChatML's) of a
 * Hugging Face tokenizer that has them. Returns the count (at most
 * DS_TOK_MAX_STOP); a llama2.c tokenizer: EOS and BOS, as before. */
#define DS_TOK_MAX_STOP 4
int ds_tokenizer_stop_ids(const ds_tokenizer *tok, int *stop);

/* Id of a piece given as bytes, or -1. */
int ds_tokenizer_lookup(const ds_tokenizer *tok, const char *piece, int len);

/* Encode text (dummy prefix space, byte fallback, best-score merge first).
 * bos/eos: prepend/append those ids. Returns the count written to ids
 * (ids must hold strlen(text) + 3). A byte whose fallback id is outside the
 * vocabulary (vocab_size < 259) becomes <unk>.
 * Hugging Face kind: bos asks for the post-processor's special tokens (as
 * the reference's encode(text)), eos appends eos_id; -1 with ds_err set for
 * text that is not UTF-8. */
int ds_tokenizer_encode(ds_tokenizer *tok, const char *text, int bos, int eos, int *ids);
/* Decode one token given the previous one (strips the leading space after
 * BOS, turns <0xNN> into the byte). Returns a pointer into the tokenizer
 * (valid while it lives), *len its length; NULL for an id out of range. */
const char *ds_tokenizer_decode(ds_tokenizer *tok, int prev, int id, int *len);
/* Decode a sequence to a new NUL-terminated string (*len its length, may be
 * NULL). BOS and EOS produce no text (BOS still strips the next leading
 * space), so decode_ids(encode(x, bos=1)) == x. NULL and ds_err set on an
 * id out of range. */
char *ds_tokenizer_decode_ids(ds_tokenizer *tok, const int *ids, int n, size_t *len);
#endif
