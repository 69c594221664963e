/* The model engine meets checkpoints and ranks: load the weights from a
 * ds_model_file in f32 (jobs that train or take gradients) or in their
 * stored precision (eval, generate; a delta is added afterwards in that
 * precision, as apply would), write a model back
 * in chosen dtypes, OpenBLAS threads per rank, and the perplexity of a set
 * of documents, data-parallel across ranks or through a pipeline (the
 * student-teacher comparison of fit-scales is src/fitscales_pipe.h's). */
#ifndef DS_MODEL_IO_H
#define DS_MODEL_IO_H
#include "io/h5_model.h"
#include "io/text.h"
#include "io/tokenizer.h"
#include "src/comm.h"
#include "src/ctx.h"
#include "src/model.h"
#include "src/pipeline.h"

/* The precision of the weights in memory: all f32 (bf16/f16 converted), or
 * every matrix as stored (F32, F16 or BF16; norms f32). */
typedef enum { DS_LLAMA_LOAD_F32 = 0, DS_LLAMA_LOAD_STORED = 1 } ds_llama_load_prec;

/* Independent: allocate m for the file's config and read every tensor as
 * f32 (bf16/f16 converted). 0 or a ds_exit code (message not yet printed). */
int ds_llama_load(ds_llama *m, ds_model_file *f);
/* The same in the precision prec: with DS_LLAMA_LOAD_STORED a bf16
 * checkpoint takes ~2 bytes per parameter. */
int ds_llama_load_as(ds_llama *m, ds_model_file *f, ds_llama_load_prec prec);
/* The same for a pipeline stage (ds_llama_init_stage): only the tensors of
 * layers [l0, l1) (and the embeddings, final norm and head where the stage
 * holds them) are read; every tensor's presence and shape is checked. */
int ds_llama_load_stage(ds_llama *m, ds_model_file *f, ds_llama_load_prec prec, int l0, int l1);
/* The same with tensor i (engine order) as stored where stored[i] != 0,
 * else f32 (stored NULL: all f32). */
int ds_llama_load_stage_mask(ds_llama *m, ds_model_file *f, const unsigned char *stored, int l0, int l1);

/* Collective: open path, load the weights, and when tok is not NULL its
 * tokenizer (a checkpoint without one is an input error). When dtypes is not
 * NULL, *dtypes receives the stored dtype of each tensor in engine order.
 * Errors are printed once; returns the agreed code. */
int ds_llama_load_path(const ds_ctx *ctx, const char *path, ds_llama *m, ds_tokenizer *tok, ds_dtype **dtypes);
/* The same in the precision prec (ds_llama_load_path: DS_LLAMA_LOAD_F32). */
int ds_llama_load_path_as(const ds_ctx *ctx, const char *path, ds_llama *m, ds_tokenizer *tok, ds_dtype **dtypes,
                          ds_llama_load_prec prec);
/* Collective: the pipeline plan for P stages per group over ctx's ranks
 * (ds_pipe_init, stages balanced by the stored bytes of their layers; P
 * must divide the number of ranks and be at most the number of layers:
 * else DS_EXIT_USAGE naming --pipeline), and this rank's stage of PATH in
 * its stored precision (ds_llama_load_stage), with the tokenizer (tok may
 * be NULL). On failure nothing is left allocated (pipe included). */
int ds_llama_load_path_pipe(const ds_ctx *ctx, const char *path, int P, ds_pipe *pipe, ds_llama *m, ds_tokenizer *tok);
/* Collective: this rank's stage of PATH under an existing plan (a second
 * model of a pipelined job, e.g. eval's kl reference): the layers
 * [pipe->l0, pipe->l1) in their stored precision. PATH must have as many
 * layers as the plan (DS_EXIT_INPUT naming it otherwise). */
int ds_llama_load_path_stage(const ds_ctx *ctx, const char *path, const ds_pipe *pipe, ds_llama *m);

/* Collective: write m as a checkpoint at path (atomically, see
 * ds_model_commit), tensor i stored as dtypes[i] (NULL: all F32; converted
 * from its dtype in memory), with tok
 * (may be NULL). Tensors are shared out across ranks by size; every rank
 * holds the same m. Returns the agreed code (already printed). */
int ds_llama_save(const ds_llama *m, const ds_ctx *ctx, const char *path, const ds_dtype *dtypes,
                  const ds_tokenizer *tok, int overwrite);
/* The same, calling attrs(f, arg) on every rank after the file is created
 * (to add root attributes, collectively; its non-zero return fails the
 * save). */
struct ds_model_file;
int ds_llama_save_attrs(const ds_llama *m, const ds_ctx *ctx, const char *path, const ds_dtype *dtypes,
                        const ds_tokenizer *tok, int overwrite, int (*attrs)(struct ds_model_file *f, const void *arg),
                        const void *arg);

/* OpenBLAS threads: the node's CPUs shared by the ranks on that node. */
void ds_llama_threads_auto(const ds_ctx *ctx);

/* Perplexity of documents: each is tokenized with BOS and cut to seq_len
 * tokens; every token after the first is predicted. Documents are shared out
 * across ranks; per-document sums are reduced and added in document order, so
 * the result does not depend on the number of ranks. Collective. */
typedef struct {
    int documents;
    int64_t tokens;   /* predicted tokens */
    double nll_sum;   /* nats */
    double nll;       /* mean NLL per predicted token */
    double ppl;       /* exp(nll) */
} ds_ppl_result;
int ds_llama_ppl(const ds_ctx *ctx, const ds_llama *m, ds_tokenizer *tok, const ds_text_docs *docs, int seq_len,
                 ds_ppl_result *out);
/* The same through a pipeline (src/pipeline.h): m is this rank's stage;
 * the groups share out the documents (by size, as ranks do above), each
 * document is one micro-batch through its group's stages, and the last
 * stages' sums are all-reduced: every rank gets the result, equal bit for
 * bit to ds_llama_ppl's on the whole model at any P and number of groups. */
int ds_llama_ppl_pipe(const ds_ctx *ctx, const ds_pipe *p, const ds_llama *m, ds_tokenizer *tok,
                      const ds_text_docs *docs, int seq_len, ds_ppl_result *out);
#endif
