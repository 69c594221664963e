/* The option layer: one table per job from which parsing, validation, the
 * error messages and --help are all produced (docs/cli.md is generated from
 * --help). No job writes an option loop of its own.
 *
 * A job describes its options as an array of ds_opt ending in {0}; each entry
 * names a field of the job's own options struct by offset. The shared options
 * (-o, --overwrite, --json, --quiet, --force, --device, --checkpoint) are the
 * DS_OPT_* macros below, defined once. Example:
 *
 *     typedef struct { const char *base; int steps; double lr; int overwrite; } opts;
 *     static const ds_opt table[] = {
 *         DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint"),
 *         DS_OPT_INT(opts, steps, "steps", "N", 1, 1000000000, "100", "optimiser steps"),
 *         DS_OPT_OVERWRITE(opts, overwrite),
 *         DS_OPT_QUIET,
 *         {0}};
 *     static const ds_cmd cmd = {.usage = "deltasoup x --base B.h5 [options]",
 *                                .about = "What it does.", .opts = table};
 *     opts o = {0};
 *     int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
 *     if (rc) return ds_opts_exit(rc);   // --help (exit 0) or a usage error (exit 2)
 *
 * Syntax: --name VALUE, --name=VALUE, -o VALUE, -oVALUE; "--" ends the
 * options; positional arguments may stand anywhere (as getopt_long permutes).
 * Errors, printed once by rank 0 as "deltasoup JOB: error: ...":
 *   unknown option '--bogus' (see --help)
 *   --steps: expected an integer in [1, 1000000000], got 'abc'
 *   --scale: expected one of tensor, row, col, got 'x' */
#ifndef DS_OPTS_H
#define DS_OPTS_H
#include <stddef.h>
#include <stdint.h>
#include "src/ctx.h"

typedef enum {
    DS_OPT_T_FLAG = 1, /* int, set to 1 */
    DS_OPT_T_STR,      /* const char *; .choices (optional) limits the values */
    DS_OPT_T_OPTSTR,   /* const char *, value optional: "--name" alone stores .def */
    DS_OPT_T_INT,      /* int in [lo, hi] */
    DS_OPT_T_I64,      /* int64_t in [lo, hi] */
    DS_OPT_T_DOUBLE,   /* double in [lo, hi] */
    DS_OPT_T_CHOICE,   /* int: index of the value in .choices */
    DS_OPT_T_LIST,     /* ds_strlist: every occurrence appended, in order */
    DS_OPT_T_CALL,     /* .fn(o, value) at each occurrence, in order */
    DS_OPT_T_QUIET,    /* sets ctx->quiet */
} ds_opt_type;

/* A repeatable option's values or the positional arguments (pointers into
 * argv; the array is freed by ds_opts_free). */
typedef struct {
    int n;
    const char **v;
} ds_strlist;

typedef struct {
    const char *name;           /* long name without "--"; NULL ends the table */
    char short_name;            /* 'o' for -o, or 0 */
    ds_opt_type type;
    size_t off;                 /* offsetof(job's opts struct, field) */
    const char *meta;           /* the value's placeholder in --help ("B.h5") */
    const char *help;           /* one or more lines ('\n' breaks a line) */
    const char *def;            /* default, parsed as if given (shown in --help); OPTSTR: the bare value */
    double lo, hi;              /* INT, I64, DOUBLE: the accepted range */
    const char *const *choices; /* CHOICE, STR: NULL-terminated list of values */
    size_t given;               /* 1 + offsetof an int counting occurrences; 0 = not kept */
    int (*fn)(void *o, const char *value); /* CALL: 0 ok, else ds_err code */
} ds_opt;

typedef struct {
    const char *usage;  /* synopsis lines after "usage: " (further lines start with "deltasoup") */
    const char *about;  /* what the job does (printed after the synopsis) */
    const ds_opt *opts; /* the table, ending in {0} */
    const char *epilog; /* printed after the options (file types, exit codes, notes) */
    /* Positional arguments, collected into a ds_strlist at pos_off when
     * pos_max != 0 (-1: any number); pos_name names them in errors. */
    size_t pos_off;
    int pos_min, pos_max;
    const char *pos_name;
    /* Cross-option rules after parsing: 0 ok, else a ds_err code. */
    int (*check)(void *o);
} ds_cmd;

#define DS_OPTS_HELP (-1)

/* Collective (every rank parses the same argv): apply the table's defaults
 * to o (the caller initialises the rest, e.g. opts o = {0}), parse, run
 * cmd->check. Returns 0, DS_OPTS_HELP after rank 0 printed the
 * help, or DS_EXIT_USAGE/DS_EXIT_INPUT after rank 0 printed the error. */
int ds_opts_parse(ds_ctx *ctx, const ds_cmd *cmd, int argc, char **argv, void *o);
/* The exit code for a non-zero ds_opts_parse result. */
static inline int ds_opts_exit(int rc) { return rc == DS_OPTS_HELP ? 0 : rc; }
/* Free the lists ds_opts_parse allocated in o (repeatable options, positionals). */
void ds_opts_free(const ds_cmd *cmd, void *o);
/* Write the --help text of job to f. */
void ds_opts_help(FILE *f, const char *job, const ds_cmd *cmd);
/* How often the option was given (needs .given). */
int ds_opts_count(const ds_cmd *cmd, const void *o, const char *name);

/* ---- table entries: the general kinds */
#define DS_OPT_FLAG(T, f, name, help) {name, 0, DS_OPT_T_FLAG, offsetof(T, f), NULL, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_STRING(T, f, name, meta, help) {name, 0, DS_OPT_T_STR, offsetof(T, f), meta, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_STRING_DEF(T, f, name, meta, def, help) \
    {name, 0, DS_OPT_T_STR, offsetof(T, f), meta, help, def, 0, 0, NULL, 0, NULL}
#define DS_OPT_INT(T, f, name, meta, lo, hi, def, help) \
    {name, 0, DS_OPT_T_INT, offsetof(T, f), meta, help, def, lo, hi, NULL, 0, NULL}
#define DS_OPT_I64(T, f, name, meta, lo, hi, def, help) \
    {name, 0, DS_OPT_T_I64, offsetof(T, f), meta, help, def, lo, hi, NULL, 0, NULL}
#define DS_OPT_DOUBLE(T, f, name, meta, lo, hi, def, help) \
    {name, 0, DS_OPT_T_DOUBLE, offsetof(T, f), meta, help, def, lo, hi, NULL, 0, NULL}
/* choices: a NULL-terminated array of names; the field gets the index. */
#define DS_OPT_CHOICE(T, f, name, meta, choices, def, help) \
    {name, 0, DS_OPT_T_CHOICE, offsetof(T, f), meta, help, def, 0, 0, choices, 0, NULL}
#define DS_OPT_LIST(T, f, name, meta, help) {name, 0, DS_OPT_T_LIST, offsetof(T, f), meta, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_CALL(name, meta, fn, help) {name, 0, DS_OPT_T_CALL, 0, meta, help, NULL, 0, 0, NULL, 0, fn}
/* Counts occurrences in the int field g (e.g. to tell a default from a choice). */
#define DS_OPT_GIVEN(T, g) (offsetof(T, g) + 1)

/* ---- the shared options, defined once */
#define DS_OPT_OUTPUT(T, f, meta, help) {"output", 'o', DS_OPT_T_STR, offsetof(T, f), meta, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_OVERWRITE(T, f) DS_OPT_OVERWRITE_AS(T, f, "replace an existing output")
#define DS_OPT_JSON(T, f, help) {"json", 0, DS_OPT_T_FLAG, offsetof(T, f), NULL, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_QUIET DS_OPT_QUIET_AS("no progress lines")
#define DS_OPT_OVERWRITE_AS(T, f, help) {"overwrite", 0, DS_OPT_T_FLAG, offsetof(T, f), NULL, help, NULL, 0, 0, NULL, 0, NULL}
/* The same options where a job's meaning is narrower or wider (help text of its own). */
#define DS_OPT_QUIET_AS(help) {"quiet", 0, DS_OPT_T_QUIET, 0, NULL, help, NULL, 0, 0, NULL, 0, NULL}
#define DS_OPT_FORCE(T, f, help) {"force", 0, DS_OPT_T_FLAG, offsetof(T, f), NULL, help, NULL, 0, 0, NULL, 0, NULL}
/* --no-verify: read tensors without checking their recorded digests (the
 * job passes it to ds_verify_init, src/hash.h). */
#define DS_OPT_NO_VERIFY(T, f)                                                                                  \
    {"no-verify", 0, DS_OPT_T_FLAG, offsetof(T, f), NULL,                                                     \
     "read tensors without checking them against the digests recorded in\n"                                 \
     "the files (docs/robustness.md \"Verification on read\"); says so on stderr", NULL, 0, 0, NULL, 0, NULL}
/* --pipeline P and --mem-per-rank GIB of the jobs that can shard a model's
 * layers over ranks (src/pipeline.h, docs/model.md "Pipeline"); WHAT starts
 * the help ("--ppl: " where only part of a job runs pipelined). The job
 * passes GiB * 2^30 to ds_mem_set_per_rank (src/membudget.h). */
#define DS_OPT_PIPELINE(T, f, what)                                                                             \
    DS_OPT_INT(T, f, "pipeline", "P", 0, 1 << 20, "0",                                                        \
               what "the model's layers over groups of P ranks, each rank holding\n"                        \
                    "one stage's layers (P divides the ranks; docs/model.md); 0: 1 when\n"                  \
                    "the model fits a rank's memory, else the fewest stages that fit")
#define DS_OPT_MEM_PER_RANK(T, f)                                                                               \
    DS_OPT_DOUBLE(T, f, "mem-per-rank", "GIB", 0, 1e9, NULL,                                                  \
                  "the memory one rank may use, in GiB (default: the node's memory\n"                       \
                  "divided by the ranks on it); a model that does not fit is refused")
extern const char *const ds_opt_devices[]; /* cpu, cuda */
#define DS_OPT_DEVICE(T, f, help) \
    {"device", 0, DS_OPT_T_STR, offsetof(T, f), "DEV", help, NULL, 0, 0, ds_opt_devices, 0, NULL}
#define DS_OPT_CHECKPOINT(T, f, help) \
    {"checkpoint", 0, DS_OPT_T_STR, offsetof(T, f), "DIR", help, NULL, 0, 0, NULL, 0, NULL}
#endif
