/* Which kind of file a path holds, told without reading it whole (inspect's
 * dispatch, jobs/inspect.def): the safetensors test here, the checkpoint
 * and delta tests beside their readers (ds_model_is_model, ds_delta_is_delta),
 * and for a file of no known kind, why. */
#ifndef DS_IO_DETECT_H
#define DS_IO_DETECT_H

/* 1 when path looks like a safetensors file: by its name (*.safetensors, so
 * that a damaged one gets the reader's precise error) or by its header (an
 * 8-byte length that fits the file, then '{'). */
int ds_st_is_safetensors(const char *path);

/* For a file that no reader took: DS_EXIT_INPUT with the reason -- not a
 * file deltasoup reads, an HDF5 file without a format attribute, an unknown
 * format -- naming path and the known kinds (e.g. "model, delta,
 * safetensors"); or the error of opening it (missing, damaged HDF5). */
int ds_file_unknown_kind(const char *path, const char *kinds);
#endif
