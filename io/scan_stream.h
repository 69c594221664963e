/* The anomaly report's pass over delta files (`deltasoup scan`, and
 * aggregate --report through ds_scan_report; docs/scan.md): the tensors in
 * chunks of rows through aggregate's stream (io/agg_stream.h: each rank
 * reads its contiguous range of the files, an all-gather gives every rank
 * every delta's rows of the chunk), the math of src/scan.h on each chunk.
 *
 * Sharing out: chunk j of the pass (counted over all tensors in order) is
 * computed by rank j % size into a block of sums that is zero on every other
 * rank; one all-reduce per chunk then gives every rank the chunk's sums,
 * which each rank adds to the totals in chunk order. Each chunk's sums are
 * formed on one rank in a fixed order and the chunks are added in a fixed
 * order, so the statistics do not depend on the number of ranks (chunk
 * boundaries depend on chunk_mb, the shapes and n only). */
#ifndef DS_IO_SCAN_STREAM_H
#define DS_IO_SCAN_STREAM_H
#include <jansson.h>
#include "io/agg_stream.h"
#include "src/scan.h"

/* Collective: the sums (src/scan.h) of the s->np deltas over every tensor
 * of layout, into sums (initialised for s->np; equal on every rank).
 * Returns the agreed status (printed once). */
int ds_scan_stream(ds_agg_stream *s, const ds_delta_meta *layout, ds_scan_sums *sums);

/* Rule duplicate: d[u] gets the bit when content[u] equals another's. */
void ds_scan_mark_duplicates(int n, const char *const *content, ds_scan_delta *d);

/* The report's "deltas" array: one object per delta, in input order:
 * "file", "owner", "content_sha256", "norm", "cosine_median",
 * "sign_agreement", "krum_score", "z" (an object with the four statistics'
 * robust z-scores, null when infinite), "flagged" (true/false) and
 * "reasons" (the names of the rules raised, src/scan.h). */
json_t *ds_scan_deltas_json(int n, const char *const *file, const char *const *owner, const char *const *content,
                            const ds_scan_delta *d);
/* The report's parameters: "n", "byzantine", "krum_neighbours",
 * "threshold", "median" and "sigma" (objects by statistic). */
json_t *ds_scan_summary_json(int n, const ds_scan_summary *sum);

/* Collective: the pass over the n files (same layout; content[k]: file k's
 * content hash) with its own stream of chunk_mb MiB per chunk, then
 * ds_scan_finish with f and threshold and the duplicate rule: d[n] and
 * *sum, equal on every rank. Returns the agreed status (printed once). */
int ds_scan_files(const ds_ctx *ctx, ds_comm *comm, int n, const char *const *file, const char *const *content,
                  const ds_delta_meta *layout, double chunk_mb, size_t f, double threshold, ds_scan_delta *d,
                  ds_scan_summary *sum);

/* Collective: everything for a caller that already opened and checked the
 * n delta files (same layout, checked digests and base; e.g. aggregate
 * --report over its participants): each file's owner and content hash
 * (ds_delta_open), then ds_scan_files with Krum's f = ds_scan_default_f(n)
 * and the threshold DS_SCAN_THRESHOLD; *deltas receives
 * ds_scan_deltas_json's array (every rank; NULL on failure). Needs n >= 3
 * (else DS_EXIT_INPUT). Returns the agreed status (printed once). */
int ds_scan_report(const ds_ctx *ctx, ds_comm *comm, int n, const char *const *file, const ds_delta_meta *layout,
                   double chunk_mb, json_t **deltas);
#endif
