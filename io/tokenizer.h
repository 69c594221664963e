/* SentencePiece-style BPE vocabulary (llama2.c tokenizer format) and
 * encode/decode. Ids 0,1,2 = <unk>,<s>,</s>; 3..258 = byte fallback. */
#ifndef DS_IO_TOKENIZER_H
#define DS_IO_TOKENIZER_H
#include <stdint.h>

typedef struct {
    int vocab_size;
    int max_token_length;
    char **pieces;  /* vocab_size NUL-terminated byte strings */
    int *lengths;   /* byte length of each piece (pieces may hold NULs? no: kept for speed) */
    float *scores;  /* merge scores */
    void *index;    /* private lookup structure (built on demand) */
} ds_tokenizer;

#define DS_TOK_BOS 1
#define DS_TOK_EOS 2

/* Load a llama2.c tokenizer file for vocab_size tokens; 0 or ds_exit code. */
int ds_tokenizer_load_llama2c(const char *path, int vocab_size, ds_tokenizer *tok);
/* Build from pieces/scores (takes copies). */
int ds_tokenizer_from_arrays(int vocab_size, int max_token_length, const char *const *pieces,
                             const int *lengths, const float *scores, ds_tokenizer *tok);
void ds_tokenizer_free(ds_tokenizer *tok);

/* Encode text (dummy prefix space, byte fallback, best-score merge first).
 * bos/eos: prepend/append those ids. Returns the count written to ids
 * (ids must hold strlen(text) + 3). */
int ds_tokenizer_encode(ds_tokenizer *tok, const char *text, int bos, int eos, int *ids);
/* Decode one token given the previous one (strips the leading space after
 * BOS, turns <0xNN> into the byte). Returns a pointer valid until the next
 * call; *len its length. */
const char *ds_tokenizer_decode(ds_tokenizer *tok, int prev, int id, int *len);
#endif
