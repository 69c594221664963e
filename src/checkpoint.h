/* Resumable job state in one file, written atomically (docs/fit-scales.md).
 *
 * A checkpoint holds
 *   - the job's record: its name and the fields that identify the run
 *     (input content hashes, options). A restart whose record differs is
 *     refused (ds_ckpt_match names the first differing field);
 *   - state fields (step, data position, rank count, ...), free to differ;
 *   - named arrays (F32, F64, I32, U64), stored little-endian bit for bit.
 *
 * File: "deltasoup-checkpoint 1\n", one line of JSON (record, state, the
 * arrays' names, dtypes, counts and offsets), then the array bytes, then the
 * 32-byte SHA-256 of everything before it. ds_ckpt_write writes PATH.tmp,
 * fsyncs it, renames it to PATH and fsyncs the directory: a reader sees the
 * old checkpoint or the new one, never half of one; ds_ckpt_read checks the
 * magic, the JSON and the digest. Serial (one rank writes; every rank may
 * read). Errors: 0 or a ds_exit code with ds_err set naming the file. */
#ifndef DS_CHECKPOINT_H
#define DS_CHECKPOINT_H
#include <signal.h>
#include <stdint.h>
#include "src/ds.h"

typedef struct ds_ckpt ds_ckpt;

ds_ckpt *ds_ckpt_new(const char *job);
void ds_ckpt_free(ds_ckpt *c);

/* Record fields (the job's identity); setting a key again replaces it.
 * Doubles round-trip exactly. */
void ds_ckpt_record_str(ds_ckpt *c, const char *key, const char *v);
void ds_ckpt_record_int(ds_ckpt *c, const char *key, int64_t v);
void ds_ckpt_record_double(ds_ckpt *c, const char *key, double v);

/* State fields. get: DS_EXIT_INPUT when missing or not an integer. */
void ds_ckpt_state_int(ds_ckpt *c, const char *key, int64_t v);
int ds_ckpt_get_int(const ds_ckpt *c, const char *key, int64_t *v);

/* Arrays: put copies n elements of dtype t; get checks name, dtype and
 * count (DS_EXIT_INPUT naming the file it was read from and the array
 * otherwise). */
void ds_ckpt_put_array(ds_ckpt *c, const char *name, ds_dtype t, int64_t n, const void *data);
int ds_ckpt_get_array(const ds_ckpt *c, const char *name, ds_dtype t, int64_t n, void *out);

/* Atomic write of c at path (PATH.tmp, fsync, rename, fsync of the folder). */
int ds_ckpt_write(const ds_ckpt *c, const char *path);
/* Read and verify path into *out (NULL on error). */
int ds_ckpt_read(const char *path, ds_ckpt **out);

/* Does the saved checkpoint (read from path) belong to the job described by
 * now? Same job name and record fields; else DS_EXIT_INPUT naming path and
 * the first differing field with both values. */
int ds_ckpt_match(const ds_ckpt *saved, const ds_ckpt *now, const char *path);

/* mkdir -p of a checkpoint folder: 0 or DS_EXIT_OUTPUT. */
int ds_ckpt_mkdir(const char *dir);

/* Stop signals of a resumable job: while caught, SIGUSR1 and SIGTERM set a
 * flag instead of ending the process (Slurm signals every task, mpiexec
 * forwards SIGUSR1). A job reads ds_ckpt_stop_requested() at its step
 * boundaries and agrees on it across ranks (an all-reduce), so that every
 * rank stops after the same step, checkpoints and exits DS_EXIT_CHECKPOINTED.
 * catch clears the flag and keeps the previous handlers in *saved; restore
 * puts them back. */
typedef struct {
    struct sigaction usr1, term;
} ds_ckpt_signals;
void ds_ckpt_signals_catch(ds_ckpt_signals *saved);
void ds_ckpt_signals_restore(const ds_ckpt_signals *saved);
/* The signal number caught since ds_ckpt_signals_catch, or 0. */
int ds_ckpt_stop_requested(void);
#endif
