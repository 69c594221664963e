/* The option layer (src/opts.h): parsing, validation and --help from one table. */
#include "src/opts.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ds_opt_devices[] = {"cpu", "cuda", NULL};

#define FIELD(o, off, T) ((T *)(void *)((char *)(o) + (off)))

static const ds_opt *find_long(const ds_cmd *cmd, const char *name, size_t len)
{
    for (const ds_opt *p = cmd->opts; p && p->name; p++)
        if (strlen(p->name) == len && strncmp(p->name, name, len) == 0) return p;
    return NULL;
}

static const ds_opt *find_short(const ds_cmd *cmd, char c)
{
    for (const ds_opt *p = cmd->opts; p && p->name; p++)
        if (p->short_name && p->short_name == c) return p;
    return NULL;
}

static int takes_value(const ds_opt *p) { return p->type != DS_OPT_T_FLAG && p->type != DS_OPT_T_QUIET; }

/* "a, b or c" into buf */
static const char *choice_list(const char *const *ch, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; ch[i] && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i == 0 ? "" : ch[i + 1] ? ", " : " or ", ch[i]);
    return buf;
}

static int choice_index(const char *const *ch, const char *v)
{
    for (int i = 0; ch[i]; i++)
        if (strcmp(ch[i], v) == 0) return i;
    return -1;
}

static void list_push(ds_strlist *l, const char *v)
{
    l->v = ds_realloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
    l->v[l->n++] = v;
}

/* A range bound as an integer: INT64_MAX is 2^63 as a double. */
static int64_t i64_of(double x)
{
    return x >= 9223372036854775807.0 ? INT64_MAX : x <= -9223372036854775808.0 ? INT64_MIN : (int64_t)x;
}

/* A number is written without blanks around it: strtol and strtod skip
 * leading white space, so " 5" would pass for 5. */
static int padded(const char *v)
{
    size_t n = strlen(v);
    return n > 0 && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1]));
}

/* Store one value of option p (shown to the user as opt, e.g. "--steps"). */
static int set_value(const ds_opt *p, const char *opt, const char *v, void *o)
{
    char buf[256];
    if ((p->type == DS_OPT_T_INT || p->type == DS_OPT_T_I64 || p->type == DS_OPT_T_DOUBLE) && padded(v)) {
        if (p->type == DS_OPT_T_INT || p->type == DS_OPT_T_I64)
            return ds_err(DS_EXIT_USAGE, "%s: expected an integer in [%" PRId64 ", %" PRId64 "], got '%s'", opt,
                          i64_of(p->lo), i64_of(p->hi), v);
        if (p->type == DS_OPT_T_DOUBLE)
            return ds_err(DS_EXIT_USAGE, "%s: expected a number in [%g, %g], got '%s'", opt, p->lo, p->hi, v);
    }
    switch (p->type) {
    case DS_OPT_T_FLAG: *FIELD(o, p->off, int) = 1; return 0;
    case DS_OPT_T_QUIET: return 0;
    case DS_OPT_T_STR:
        if (p->choices && choice_index(p->choices, v) < 0)
            return ds_err(DS_EXIT_USAGE, "%s: expected %s, got '%s'", opt, choice_list(p->choices, buf, sizeof buf), v);
        /* fallthrough */
    case DS_OPT_T_OPTSTR: *FIELD(o, p->off, const char *) = v; return 0;
    case DS_OPT_T_INT: {
        long x;
        int rc = ds_parse_int(opt, v, (long)p->lo, (long)p->hi, &x);
        if (!rc) *FIELD(o, p->off, int) = (int)x;
        return rc;
    }
    case DS_OPT_T_I64: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || (double)x < p->lo || (double)x > p->hi)
            return ds_err(DS_EXIT_USAGE, "%s: expected an integer in [%" PRId64 ", %" PRId64 "], got '%s'", opt,
                          i64_of(p->lo), i64_of(p->hi), v);
        *FIELD(o, p->off, int64_t) = (int64_t)x;
        return 0;
    }
    case DS_OPT_T_DOUBLE: return ds_parse_double(opt, v, p->lo, p->hi, FIELD(o, p->off, double));
    case DS_OPT_T_CHOICE: {
        int i = choice_index(p->choices, v);
        if (i < 0) return ds_err(DS_EXIT_USAGE, "%s: expected %s, got '%s'", opt, choice_list(p->choices, buf, sizeof buf), v);
        *FIELD(o, p->off, int) = i;
        return 0;
    }
    case DS_OPT_T_LIST: list_push(FIELD(o, p->off, ds_strlist), v); return 0;
    case DS_OPT_T_CALL: return p->fn(o, v);
    }
    return ds_err(DS_EXIT_FAIL, "%s: bad option table entry", opt);
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int parse_args(ds_ctx *ctx, const ds_cmd *cmd, int argc, char **argv, void *o)
{
    ds_strlist *pos = cmd->pos_max ? FIELD(o, cmd->pos_off, ds_strlist) : NULL;
    int npos = 0, end_of_opts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const ds_opt *p = NULL;
        char opt[128];
        if (end_of_opts || a[0] != '-' || a[1] == 0) { /* positional ("-" alone is one too) */
            if (!pos || (cmd->pos_max > 0 && npos >= cmd->pos_max))
                return ds_err(DS_EXIT_USAGE, "unexpected argument '%s' (see --help)", a);
            list_push(pos, a);
            npos++;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            end_of_opts = 1;
            continue;
        }
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            p = find_long(cmd, a + 2, len);
            if (!p) return ds_err(DS_EXIT_USAGE, "unknown option '%.*s' (see --help)", (int)(len + 2), a);
            if (eq) {
                if (!takes_value(p)) return ds_err(DS_EXIT_USAGE, "--%s takes no value, got '%s'", p->name, a);
                val = eq + 1;
            }
        } else {
            p = find_short(cmd, a[1]);
            if (!p) return ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", a);
            if (a[2]) {
                if (!takes_value(p)) return ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", a);
                val = a + 2;
            }
        }
        snprintf(opt, sizeof opt, "--%s", p->name);
        if (p->type == DS_OPT_T_QUIET) ctx->quiet = 1;
        if (takes_value(p) && !val) {
            if (p->type == DS_OPT_T_OPTSTR) {
                /* "--json OUT" as well as "--json=OUT"; alone it stores the default */
                val = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : p->def;
            } else {
                if (i + 1 >= argc) return ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", opt);
                val = argv[++i];
            }
        }
        int rc = set_value(p, opt, val, o);
        if (rc) return rc;
        if (p->given) (*FIELD(o, p->given - 1, int))++;
    }
    if (npos < cmd->pos_min)
        return ds_err(DS_EXIT_USAGE, "missing %s (see --help)", cmd->pos_name ? cmd->pos_name : "arguments");
    return cmd->check ? cmd->check(o) : 0;
}

int ds_opts_parse(ds_ctx *ctx, const ds_cmd *cmd, int argc, char **argv, void *o)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (is_help(argv[i])) {
            if (ctx->rank == 0) {
                ds_opts_help(stdout, ctx->job, cmd);
                fflush(stdout);
            }
            return DS_OPTS_HELP;
        }
    int rc = 0;
    for (const ds_opt *p = cmd->opts; p && p->name && !rc; p++) {
        if (p->type == DS_OPT_T_LIST) memset(FIELD(o, p->off, ds_strlist), 0, sizeof(ds_strlist));
        else if (p->def && p->type != DS_OPT_T_OPTSTR && p->type != DS_OPT_T_CALL)
            rc = set_value(p, p->name, p->def, o);
        if (p->given) *FIELD(o, p->given - 1, int) = 0;
    }
    if (cmd->pos_max) memset(FIELD(o, cmd->pos_off, ds_strlist), 0, sizeof(ds_strlist));
    if (!rc) rc = parse_args(ctx, cmd, argc, argv, o);
    rc = ds_ctx_agree(ctx, rc);
    if (rc) ds_opts_free(cmd, o);
    return rc;
}

void ds_opts_free(const ds_cmd *cmd, void *o)
{
    for (const ds_opt *p = cmd->opts; p && p->name; p++)
        if (p->type == DS_OPT_T_LIST) {
            ds_strlist *l = FIELD(o, p->off, ds_strlist);
            free(l->v);
            l->v = NULL;
            l->n = 0;
        }
    if (cmd->pos_max) {
        ds_strlist *l = FIELD(o, cmd->pos_off, ds_strlist);
        free(l->v);
        l->v = NULL;
        l->n = 0;
    }
}

int ds_opts_count(const ds_cmd *cmd, const void *o, const char *name)
{
    const ds_opt *p = find_long(cmd, name, strlen(name));
    return p && p->given ? *(const int *)(const void *)((const char *)o + p->given - 1) : 0;
}

/* Print text with every line after the first indented by indent. */
static void put_indented(FILE *f, const char *text, int indent)
{
    for (const char *s = text; *s; s++) {
        fputc(*s, f);
        if (*s == '\n' && s[1]) fprintf(f, "%*s", indent, "");
    }
}

enum { HELP_COL = 22 };

static void help_line(FILE *f, const char *left, const char *help, const char *def)
{
    int w = fprintf(f, "  %s", left);
    if (w >= HELP_COL) {
        fputc('\n', f);
        w = 0;
    }
    fprintf(f, "%*s", HELP_COL - w, "");
    put_indented(f, help ? help : "", HELP_COL);
    if (def) fprintf(f, " (default %s)", def);
    fputc('\n', f);
}

void ds_opts_help(FILE *f, const char *job, const ds_cmd *cmd)
{
    (void)job;
    fputs("usage: ", f);
    put_indented(f, cmd->usage, 7);
    fputc('\n', f);
    if (cmd->about) {
        fputs(cmd->about, f);
        if (cmd->about[0] && cmd->about[strlen(cmd->about) - 1] != '\n') fputc('\n', f);
    }
    fputc('\n', f);
    for (const ds_opt *p = cmd->opts; p && p->name; p++) {
        char left[128];
        int k = p->short_name ? snprintf(left, sizeof left, "-%c, --%s", p->short_name, p->name)
                              : snprintf(left, sizeof left, "--%s", p->name);
        if (p->meta && p->type == DS_OPT_T_OPTSTR) snprintf(left + k, sizeof left - (size_t)k, " [%s]", p->meta);
        else if (p->meta && takes_value(p)) snprintf(left + k, sizeof left - (size_t)k, " %s", p->meta);
        help_line(f, left, p->help, p->type == DS_OPT_T_OPTSTR ? NULL : p->def);
    }
    help_line(f, "-h, --help", "this help", NULL);
    if (cmd->epilog) {
        fputc('\n', f);
        fputs(cmd->epilog, f);
        if (cmd->epilog[0] && cmd->epilog[strlen(cmd->epilog) - 1] != '\n') fputc('\n', f);
    }
}
