/* deltasoup inspect: a dispatcher on file type (jobs/inspect.def) plus the
 * pieces every branch shares, so that each file type prints the same way.
 *
 * Adding a file type: append one line to jobs/inspect.def,
 *   DS_INSPECT("kind", detect_fn, inspect_fn)
 * and write inspect_fn in its own file. A branch typically: opens the file
 * (collective), builds a jansson object on every rank, runs
 * ds_inspect_tensors over its entries (sharded by size, gathered), adds
 * ds_inspect_tensors_json and ds_inspect_hash_json, and returns
 * ds_inspect_report. Conventions of the report object (docs/cli.md):
 * "file", "format", "format_version", then type-specific members (objects
 * such as "config"), "n_tensors", "n_params", "bytes", "tensors" (array of
 * objects), "content_sha256" {recorded, computed, match}. */
#ifndef DS_JOBS_INSPECT_H
#define DS_JOBS_INSPECT_H
#include <jansson.h>
#include "src/ctx.h"
#include "src/hash.h"
#include "src/tensor_stats.h"

typedef int (*ds_inspect_detect_fn)(const char *path);
typedef int (*ds_inspect_fn)(const ds_ctx *ctx, const char *path, int json);

#define DS_INSPECT(kind, detect, fn) int detect(const char *path); int fn(const ds_ctx *ctx, const char *path, int json);
#include "jobs/inspect.def"
#undef DS_INSPECT

/* read(arg, i, buf): read entry i in its stored dtype t[i].dtype into buf
 * (ds_tinfo_bytes(&t[i]) bytes); 0 or a ds_exit code with ds_err set. */
typedef int (*ds_inspect_read_fn)(void *arg, int i, void *buf);
/* Collective: entries sharded by size (src/tensor_shard.h); the rank that
 * reads an entry computes its stats (src/tensor_stats.h), so they do not
 * depend on the number of ranks; every rank gets all n stats and the content
 * hash of the entries (src/hash.h). On failure the
 * message is printed once (ds_ctx_agree) and the code returned everywhere. */
int ds_inspect_tensors(const ds_ctx *ctx, int n, const ds_tinfo *t, ds_inspect_read_fn read, void *arg,
                       ds_tensor_stats *stats, ds_digest *content);

/* Report pieces (new references). */
json_t *ds_inspect_config_json(const ds_config *c);
json_t *ds_inspect_tensors_json(int n, const ds_tensor_stats *s);
/* {"recorded": hex or null, "computed": hex, "match": bool or null} */
json_t *ds_inspect_hash_json(const char *recorded, const ds_digest *computed);
/* Adds "n_tensors", "n_params", "bytes" and "tensors" to report. */
void ds_inspect_add_tensors(json_t *report, int n, const ds_tensor_stats *s);

/* Collective. Rank 0 prints report (as JSON, or for people: scalars as
 * "key: value", objects as indented blocks, arrays of objects as tables),
 * steals the reference. Returns 0, or DS_EXIT_INPUT with an error line when
 * content_sha256.match is false. */
int ds_inspect_report(const ds_ctx *ctx, const char *path, json_t *report, int json);
#endif
