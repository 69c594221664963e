/* Unit tests of the option layer (src/opts.h): defaults, the accepted
 * syntaxes, ranges and choices, repeatable and ordered options, positional
 * arguments, the error messages word for word, and the --help text.
 * An MPI program (parsing agrees on the status across ranks): run at 1 and 2
 * ranks by tests/unit/test_opts.sh. */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/mpi_asan.h"
#include "src/opts.h"

static ds_ctx ctx;

typedef struct {
    const char *base, *out, *device, *json;
    int steps, mode, flag, overwrite, n_lr, calls;
    int64_t seed;
    double lr;
    ds_strlist globs, pos;
    char order[64];
} opts;

static const char *const modes[] = {"tensor", "row", "col", NULL};

static int on_task(void *p, const char *v)
{
    opts *o = p;
    if (strcmp(v, "bad") == 0) return ds_err(DS_EXIT_INPUT, "--task %s: no such file", v);
    strncat(o->order, v, sizeof o->order - strlen(o->order) - 1);
    o->calls++;
    return 0;
}

static int check(void *p)
{
    opts *o = p;
    if (o->flag && !o->base) return ds_err(DS_EXIT_USAGE, "--flag needs --base");
    return 0;
}

static const ds_opt table[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint"),
    DS_OPT_OUTPUT(opts, out, "OUT", "where to write"),
    DS_OPT_INT(opts, steps, "steps", "N", 1, 1000000000, "100", "optimiser steps"),
    DS_OPT_I64(opts, seed, "seed", "S", 0, 9007199254740992.0, "42", "random seed"),
    {.name = "lr", .type = DS_OPT_T_DOUBLE, .off = offsetof(opts, lr), .meta = "X", .help = "learning rate",
     .def = "0.001", .lo = 0, .hi = 1, .given = DS_OPT_GIVEN(opts, n_lr)},
    DS_OPT_CHOICE(opts, mode, "scale", "MODE", modes, "tensor", "tensor, row or col"),
    DS_OPT_LIST(opts, globs, "bits-for", "GLOB", "repeatable\nsecond line"),
    DS_OPT_CALL("task", "T", on_task, "ordered callback"),
    {.name = "json", .type = DS_OPT_T_OPTSTR, .off = offsetof(opts, json), .meta = "OUT", .def = "-",
     .help = "JSON to OUT (alone: stdout)"},
    DS_OPT_FLAG(opts, flag, "flag", "a flag"),
    DS_OPT_DEVICE(opts, device, "cpu or cuda"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {.usage = "deltasoup t --base B.h5 [options] FILE...\ndeltasoup t --help",
                           .about = "A test job.",
                           .opts = table,
                           .epilog = "exit: 0 ok, 2 usage",
                           .pos_off = offsetof(opts, pos),
                           .pos_min = 1,
                           .pos_max = 2,
                           .pos_name = "FILE",
                           .check = check};

/* Parse a NULL-terminated argument list (argv[0] = "t"). */
static int parse(opts *o, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "t";
    for (; *args; args++) argv[argc++] = (char *)*args;
    memset(o, 0, sizeof *o);
    ds_err_clear();
    ctx.quiet = 0;
    return ds_opts_parse(&ctx, &cmd, argc, argv, o);
}

#define PARSE(o, ...) parse(o, (const char *const[]){__VA_ARGS__, NULL})

START_TEST(test_defaults)
{
    opts o;
    ck_assert_int_eq(PARSE(&o, "f.h5"), 0);
    ck_assert_int_eq(o.steps, 100);
    ck_assert_int_eq((int)o.seed, 42);
    ck_assert_double_eq(o.lr, 0.001);
    ck_assert_int_eq(o.mode, 0);
    ck_assert_ptr_null(o.base);
    ck_assert_ptr_null(o.json);
    ck_assert_int_eq(o.n_lr, 0);
    ck_assert_int_eq(o.pos.n, 1);
    ck_assert_str_eq(o.pos.v[0], "f.h5");
    ds_opts_free(&cmd, &o);
}
END_TEST

START_TEST(test_syntaxes)
{
    opts o;
    ck_assert_int_eq(PARSE(&o, "--steps", "5", "a", "--base=x.h5", "-o", "out", "--lr=0.5", "--lr", "0.25", "--scale",
                           "col", "--quiet", "--", "-b"),
                     0);
    ck_assert_int_eq(o.steps, 5);
    ck_assert_str_eq(o.base, "x.h5");
    ck_assert_str_eq(o.out, "out");
    ck_assert_double_eq(o.lr, 0.25);
    ck_assert_int_eq(o.n_lr, 2);
    ck_assert_int_eq(ds_opts_count(&cmd, &o, "lr"), 2);
    ck_assert_int_eq(ds_opts_count(&cmd, &o, "steps"), 0); /* not kept */
    ck_assert_int_eq(o.mode, 2);
    ck_assert_int_eq(ctx.quiet, 1);
    ck_assert_int_eq(o.pos.n, 2); /* positionals anywhere; after "--" even "-b" */
    ck_assert_str_eq(o.pos.v[0], "a");
    ck_assert_str_eq(o.pos.v[1], "-b");
    ds_opts_free(&cmd, &o);
    ck_assert_int_eq(PARSE(&o, "-oout2", "-", "--seed", "9007199254740992"), 0);
    ck_assert_str_eq(o.out, "out2");
    ck_assert_str_eq(o.pos.v[0], "-"); /* a lone "-" is a positional */
    ck_assert(o.seed == 9007199254740992LL);
    ds_opts_free(&cmd, &o);
}
END_TEST

START_TEST(test_repeatable_and_ordered)
{
    opts o;
    ck_assert_int_eq(PARSE(&o, "--task", "a", "--bits-for", "g1", "f", "--task=b", "--bits-for", "g2", "--task", "c"), 0);
    ck_assert_int_eq(o.globs.n, 2);
    ck_assert_str_eq(o.globs.v[0], "g1");
    ck_assert_str_eq(o.globs.v[1], "g2");
    ck_assert_int_eq(o.calls, 3);
    ck_assert_str_eq(o.order, "abc");
    ds_opts_free(&cmd, &o);
}
END_TEST

START_TEST(test_optional_value)
{
    opts o;
    ck_assert_int_eq(PARSE(&o, "f", "--json"), 0);
    ck_assert_str_eq(o.json, "-");
    ds_opts_free(&cmd, &o);
    ck_assert_int_eq(PARSE(&o, "--json", "--flag", "--base", "b", "f"), 0);
    ck_assert_str_eq(o.json, "-"); /* the next word is an option: not the value */
    ds_opts_free(&cmd, &o);
    ck_assert_int_eq(PARSE(&o, "--json", "r.json", "f"), 0);
    ck_assert_str_eq(o.json, "r.json");
    ck_assert_int_eq(o.pos.n, 1);
    ds_opts_free(&cmd, &o);
    ck_assert_int_eq(PARSE(&o, "--json=s.json", "f"), 0);
    ck_assert_str_eq(o.json, "s.json");
    ds_opts_free(&cmd, &o);
}
END_TEST

/* Each bad argument list: the exit code and the message, word for word. */
START_TEST(test_errors)
{
    static const struct {
        const char *args[6];
        int rc;
        const char *msg;
    } cases[] = {
        {{"--bogus", "f"}, DS_EXIT_USAGE, "unknown option '--bogus' (see --help)"},
        {{"--bogus=3", "f"}, DS_EXIT_USAGE, "unknown option '--bogus' (see --help)"},
        {{"-x", "f"}, DS_EXIT_USAGE, "unknown option '-x' (see --help)"},
        {{"--steps", "abc", "f"}, DS_EXIT_USAGE, "--steps: expected an integer in [1, 1000000000], got 'abc'"},
        {{"--steps", "0", "f"}, DS_EXIT_USAGE, "--steps: expected an integer in [1, 1000000000], got '0'"},
        {{"--steps=1e3", "f"}, DS_EXIT_USAGE, "--steps: expected an integer in [1, 1000000000], got '1e3'"},
        {{"--seed", "-1", "f"}, DS_EXIT_USAGE, "--seed: expected an integer in [0, 9007199254740992], got '-1'"},
        {{"--lr", "2", "f"}, DS_EXIT_USAGE, "--lr: expected a number in [0, 1], got '2'"},
        {{"--lr", "nan", "f"}, DS_EXIT_USAGE, "--lr: expected a number in [0, 1], got 'nan'"},
        /* blanks around a number (strtol/strtod would skip the leading ones) */
        {{"--steps", " 5", "f"}, DS_EXIT_USAGE, "--steps: expected an integer in [1, 1000000000], got ' 5'"},
        {{"--steps=5 ", "f"}, DS_EXIT_USAGE, "--steps: expected an integer in [1, 1000000000], got '5 '"},
        {{"--seed", "\t7", "f"}, DS_EXIT_USAGE, "--seed: expected an integer in [0, 9007199254740992], got '\\x097'"},
        {{"--lr", " 0.5", "f"}, DS_EXIT_USAGE, "--lr: expected a number in [0, 1], got ' 0.5'"},
        {{"--scale", "diag", "f"}, DS_EXIT_USAGE, "--scale: expected tensor, row or col, got 'diag'"},
        {{"--device", "tpu", "f"}, DS_EXIT_USAGE, "--device: expected cpu or cuda, got 'tpu'"},
        {{"f", "--steps"}, DS_EXIT_USAGE, "--steps needs a value (see --help)"},
        {{"--flag=1", "f"}, DS_EXIT_USAGE, "--flag takes no value, got '--flag=1'"},
        {{"a", "b", "c"}, DS_EXIT_USAGE, "unexpected argument 'c' (see --help)"},
        {{"--steps", "3"}, DS_EXIT_USAGE, "missing FILE (see --help)"},
        {{"--flag", "f"}, DS_EXIT_USAGE, "--flag needs --base"},
        {{"--task", "bad", "f"}, DS_EXIT_INPUT, "--task bad: no such file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opts o;
        char *argv[8] = {"t"};
        int argc = 1;
        for (int k = 0; cases[i].args[k]; k++) argv[argc++] = (char *)cases[i].args[k];
        memset(&o, 0, sizeof o);
        ds_err_clear();
        int rc = ds_opts_parse(&ctx, &cmd, argc, argv, &o);
        ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d, expected %d", i, rc, cases[i].rc);
        ck_assert_str_eq(ds_errmsg(), cases[i].msg);
        ck_assert_ptr_null(o.globs.v); /* freed on error */
        ck_assert_ptr_null(o.pos.v);
    }
}
END_TEST

START_TEST(test_help)
{
    opts o;
    /* --help wins over anything else, even an unknown option before it */
    ck_assert_int_eq(PARSE(&o, "--bogus", "--help"), DS_OPTS_HELP);
    ck_assert_int_eq(ds_opts_exit(DS_OPTS_HELP), 0);
    ck_assert_int_eq(PARSE(&o, "-h"), DS_OPTS_HELP);
    ck_assert_int_eq(PARSE(&o, "--", "--help"), 0); /* after "--": a file named --help */
    ck_assert_str_eq(o.pos.v[0], "--help");
    ds_opts_free(&cmd, &o);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ds_opts_help(f, "t", &cmd);
    fclose(f);
    static const char *const want =
        "usage: deltasoup t --base B.h5 [options] FILE...\n"
        "       deltasoup t --help\n"
        "A test job.\n"
        "\n"
        "  --base B.h5         base checkpoint\n"
        "  -o, --output OUT    where to write\n"
        "  --steps N           optimiser steps (default 100)\n"
        "  --seed S            random seed (default 42)\n"
        "  --lr X              learning rate (default 0.001)\n"
        "  --scale MODE        tensor, row or col (default tensor)\n"
        "  --bits-for GLOB     repeatable\n"
        "                      second line\n"
        "  --task T            ordered callback\n"
        "  --json [OUT]        JSON to OUT (alone: stdout)\n"
        "  --flag              a flag\n"
        "  --device DEV        cpu or cuda\n"
        "  --overwrite         replace an existing output\n"
        "  --quiet             no progress lines\n"
        "  -h, --help          this help\n"
        "\n"
        "exit: 0 ok, 2 usage\n";
    ck_assert_str_eq(buf, want);
    free(buf);
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    ctx = (ds_ctx){.comm = MPI_COMM_WORLD, .job = "t"};
    MPI_Comm_rank(ctx.comm, &ctx.rank);
    MPI_Comm_size(ctx.comm, &ctx.size);
    Suite *s = suite_create("opts");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {{"defaults", test_defaults},       {"syntaxes", test_syntaxes}, {"repeatable", test_repeatable_and_ordered},
                 {"optional", test_optional_value}, {"errors", test_errors},     {"help", test_help}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, ctx.rank == 0 ? CK_ENV : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    MPI_Finalize();
    return failed ? 1 : 0;
}
