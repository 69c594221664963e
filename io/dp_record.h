/* A DP fine-tune's record (src/dp_sgd.h ds_dp_record) as root attributes
 * (docs/formats.md "DP-SGD record"): dp_epsilon, dp_delta,
 * dp_noise_multiplier, dp_max_grad_norm, dp_sample_rate (float64),
 * dp_steps (int64), dp_accountant (string). finetune --dp writes all seven
 * on its checkpoint; compress copies them onto the delta (dp_epsilon and
 * dp_delta through ds_delta_meta, the other five with ds_dp_record_write). */
#ifndef DS_IO_DP_RECORD_H
#define DS_IO_DP_RECORD_H
#include <stdint.h>
#include "src/dp_sgd.h"

/* Collective (every rank the same r), on a file open for writing (the id of
 * ds_model_root or ds_delta_root): all seven attributes (with_budget) or
 * the five beyond dp_epsilon and dp_delta. */
int ds_dp_record_write(int64_t root, const ds_dp_record *r, int with_budget);
/* Read the record of a file open for reading: r->has = 0 when it has no
 * dp_epsilon; a record with dp_epsilon but not the others (a budget typed by
 * hand) reads with has = 1, those fields 0 and accountant "". A value of the
 * wrong type is DS_EXIT_INPUT naming the file and the attribute. */
int ds_dp_record_read(int64_t root, ds_dp_record *r);
#endif
