/* The anomaly report's math (`deltasoup scan`, docs/scan.md): per delta its
 * norm, its cosine to the coordinate-wise median of all deltas, its sign
 * agreement with the majority, its Krum score, and robust z-scores (median
 * and MAD) that flag the outliers. Pure: no files, no MPI. io/scan_stream.c
 * streams chunks of rows of the delta files (io/agg_stream.h) into
 * ds_scan_chunk_*, which reuse the aggregation math of src/aggregate.h
 * (median, majority, popcount distances, Krum's score).
 *
 * Values as in src/aggregate.h: user u's value at a coordinate of a 1-bit
 * tensor is v_u = g_u (2 b_u - 1), of a dense tensor the stored value. Every
 * coordinate of every tensor counts once. */
#ifndef DS_SCAN_H
#define DS_SCAN_H
#include <stddef.h>
#include <stdint.h>
#include "src/aggregate.h"

/* Sums over coordinates for n deltas, added chunk by chunk. All fields
 * point into one block buf of ds_scan_sums_len(n) doubles (so that one
 * reduction moves them all). */
typedef struct {
    size_t n;
    double *buf;
    double *sq;     /* [n] sum of v_u^2 */
    double *dot;    /* [n] sum of v_u m, m the coordinate-wise median */
    double *agree;  /* [n] coordinates where u's sign bit equals the majority bit */
    double *d;      /* [n x n] squared distances (entries i < j used) */
    double *mm;     /* [1] sum of m^2 */
    double *coords; /* [1] coordinates */
} ds_scan_sums;

size_t ds_scan_sums_len(size_t n);
void ds_scan_sums_init(ds_scan_sums *s, size_t n); /* zeroed */
void ds_scan_sums_zero(ds_scan_sums *s);
/* to += from, element by element (the caller fixes the order of the adds). */
void ds_scan_sums_add(ds_scan_sums *to, const ds_scan_sums *from);
void ds_scan_sums_free(ds_scan_sums *s);

/* Scratch for one chunk of at most `coords` coordinates in rows of at most
 * `words` packed words in all. */
typedef struct {
    float *med;
    uint64_t *maj, *agree;
} ds_scan_work;
void ds_scan_work_init(ds_scan_work *w, size_t n, size_t coords, size_t words);
void ds_scan_work_free(ds_scan_work *w);

/* Add one chunk of a 1-bit tensor (src/aggregate.h's ds_agg_bits) to s:
 * the median is ds_agg_trimmed_bits with k = (n - 1) / 2 (rounded to
 * float32, as aggregate --method median stores it), the majority bit and
 * the agreement counts ds_agg_majority_bits (sign bit b' = b XOR (g < 0),
 * 1 when at least half of the deltas have 1), the distances
 * ds_agg_dist_bits (exact from popcounts). */
void ds_scan_chunk_bits(const ds_agg_bits *c, ds_scan_sums *s, ds_scan_work *w);
/* The same for m coordinates of a dense tensor (x[u]: delta u's values):
 * median ds_agg_trimmed_dense, sign bit (v >= 0), distances
 * ds_agg_dist_dense. */
void ds_scan_chunk_dense(size_t n, const float *const *x, size_t m, ds_scan_sums *s, ds_scan_work *w);

/* ---- the statistics and the flags */
typedef enum { DS_SCAN_NORM, DS_SCAN_COSINE, DS_SCAN_AGREEMENT, DS_SCAN_KRUM, DS_SCAN_NSTATS } ds_scan_stat;
/* The statistic's name in reports: "norm", "cosine_median", "sign_agreement", "krum_score". */
extern const char *const ds_scan_stat_names[];

/* Rules, one bit each; ds_scan_rule_names[r] is rule r's name in reports:
 * norm_high, norm_low (z of log norm above T / below -T), cosine_low,
 * agreement_low (z below -T), krum_high (z above T), duplicate (the same
 * content hash as another input: set by the caller). */
typedef enum {
    DS_SCAN_NORM_HIGH,
    DS_SCAN_NORM_LOW,
    DS_SCAN_COSINE_LOW,
    DS_SCAN_AGREEMENT_LOW,
    DS_SCAN_KRUM_HIGH,
    DS_SCAN_DUPLICATE,
    DS_SCAN_NRULES
} ds_scan_rule;
extern const char *const ds_scan_rule_names[];

typedef struct {
    double stat[DS_SCAN_NSTATS]; /* norm, cosine to the median, agreement (fraction), Krum score */
    double z[DS_SCAN_NSTATS];    /* robust z (norm: of log norm); +-inf when the MAD is 0 */
    unsigned rules;              /* bit r: rule r raised */
} ds_scan_delta;

typedef struct {
    size_t f, neighbours;          /* Krum: tolerated bad deltas, n - f - 2 */
    double threshold;              /* T */
    double median[DS_SCAN_NSTATS]; /* of the values the z-scores use (norm: log norm) */
    double sigma[DS_SCAN_NSTATS];  /* 1.4826 MAD */
} ds_scan_summary;

#define DS_SCAN_MAD_SCALE 1.4826
#define DS_SCAN_THRESHOLD 8.0 /* docs/scan.md "Threshold": above every honest z measured, below every poisoned one */
/* The default f: floor((n - 3) / 2), the most Krum tolerates (n >= 2f + 3). */
size_t ds_scan_default_f(size_t n);

/* Robust z-scores of x[0..n): z = (x - median) / (1.4826 MAD), MAD the
 * median of |x - median| (the median of an even count: the mean of the two
 * middle values). When the MAD is 0: z = 0 for x equal to the median, else
 * +-inf. *median and *sigma may be NULL. */
void ds_scan_robust_z(size_t n, const double *x, double *z, double *median, double *sigma);

/* The statistics and the rules (not duplicate) of the n deltas from their
 * sums: norm sqrt(sq), cosine dot / (norm |m|) (0 when either norm is 0),
 * agreement agree / coords, Krum score ds_agg_krum_scores with f
 * (n >= f + 3). out[n]. */
void ds_scan_finish(const ds_scan_sums *s, size_t f, double threshold, ds_scan_delta *out, ds_scan_summary *sum);
#endif
