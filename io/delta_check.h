/* The input checks of compress and apply, one message each naming the file
 * and the tensor: a base / fine-tuned checkpoint pair, and a delta against
 * the base it is applied to. */
#ifndef DS_IO_DELTA_CHECK_H
#define DS_IO_DELTA_CHECK_H
#include "io/h5_delta.h"
#include "io/h5_model.h"

/* Same tensors, shapes, dtypes and config in the base bp and the fine-tuned
 * fp (tensors first: a tensor named in the message says more than a config
 * field). 0 or DS_EXIT_INPUT. */
int ds_delta_check_pair(const char *bp, const ds_model_meta *b, const char *fp, const ds_model_meta *f);
/* The delta dp fits the base bp: the base hash it records (unless force:
 * rank 0 warns), the config, every delta tensor present in the base with
 * the same shape. 0 or DS_EXIT_INPUT. */
int ds_delta_check_fit(const char *dp, const ds_delta_meta *dm, const char *bp, ds_model_file *bf, int force,
                       int rank);
#endif
