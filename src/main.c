/* deltasoup: one MPI program, one sub-command per job (src/jobs.def). */
#include "config.h"
#include "src/jobs.h"
#include "src/opts.h"
#include <cblas.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct { const char *name; ds_job_fn fn; const char *summary; } jobs[] = {
#define DS_JOB(name, fn, summary) {name, fn, summary},
#include "src/jobs.def"
#undef DS_JOB
};
#define N_JOBS (int)(sizeof jobs / sizeof jobs[0])

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deltasoup <job> [options]     (run as ./deltasoup, mpiexec -n N deltasoup, or srun deltasoup)\n"
            "       deltasoup <job> --help\n"
            "       deltasoup --version\n\njobs:\n");
    for (int i = 0; i < N_JOBS; i++) fprintf(out, "  %-12s %s\n", jobs[i].name, jobs[i].summary);
    fprintf(out, "\nexit codes: 0 ok, 1 failed, 2 usage, 3 bad input, 4 output exists or unwritable,\n"
                 "            75 stopped by a signal after writing a checkpoint (run again to resume)\n"
                 "docs: docs/cli.md, docs/formats.md\n");
}

/* version takes no options but --help: an empty table. */
static const ds_opt version_options[] = {{0}};
static const ds_cmd version_cmd = {.usage = "deltasoup version",
                                   .about = "Print the version and the features this build has.",
                                   .opts = version_options};

int ds_job_version(ds_ctx *ctx, int argc, char **argv)
{
    char none;
    int rc = ds_opts_parse(ctx, &version_cmd, argc, argv, &none);
    if (rc) return ds_opts_exit(rc);
    ds_printf0(ctx, "deltasoup %s\n", PACKAGE_VERSION);
#ifdef DS_HAVE_CUDA
    ds_printf0(ctx, "cuda: yes\n");
#else
    ds_printf0(ctx, "cuda: no\n");
#endif
#ifdef DS_HAVE_NCCL
    ds_printf0(ctx, "nccl: yes\n");
#else
    ds_printf0(ctx, "nccl: no\n");
#endif
    return 0;
}

#include "src/mpi_asan.h" /* an MPI program: no leak report of Open MPI's allocations */

/* Debian 12's OpenBLAS 0.3.21 takes CPUs it does not recognise (recent or
 * virtual Xeons) for a Prescott and runs its SSE3 kernels, 3-4x slower. It
 * chooses when the library loads, so on a CPU with AVX2 and FMA the program
 * re-executes itself once with OPENBLAS_CORETYPE=Haswell before MPI starts.
 * A choice already made (the variable set, e.g. by the site) stands. */
static void blas_pick_kernels(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* no re-exec: go on with the kernels we have */
}

/* Open MPI's shared-file-pointer component sharedfp/sm keeps a named POSIX
 * semaphore /dev/shm/sem.OMPIO_<file's basename> per file that ompio's
 * MPI_File_open (parallel HDF5) opens. A job killed while holding it leaves
 * it at 0, and every later job of 2+ ranks on that node that opens a file of
 * the same basename waits for it forever. HDF5 uses no shared file pointer,
 * so the component is excluded before MPI starts, unless the user (or the
 * site) chose the sharedfp components (docs/robustness.md "Stale MPI-IO
 * semaphores"). Set in the environment so that mpiexec's other ranks, which
 * run this same code, agree. */
static void mpi_avoid_sharedfp_sm(void)
{
    if (!getenv("OMPI_MCA_sharedfp")) setenv("OMPI_MCA_sharedfp", "^sm", 1);
}

/* A job started without mpiexec (one rank: `deltasoup inspect F`) is an Open
 * MPI singleton, which forks an orted daemon in MPI_Init only so that it
 * could later MPI_Comm_spawn; no job spawns, so it runs isolated (about half
 * a second less per start: docs/robustness.md), unless the user set the
 * parameter. Isolated singletons all take the same job name, so concurrent
 * ones share (and one's MPI_Finalize removes) the session directory
 * TMPDIR/ompi.HOST.UID/jf.0/1: each gets a private session tree
 * (orte_tmpdir_base), removed at exit. Under mpiexec or srun neither
 * parameter is touched. */
static char singleton_tmp[4096];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void singleton_tmp_remove(void)
{
    if (singleton_tmp[0]) nftw(singleton_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int launched_by_mpiexec_or_srun(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "OMPI_MCA_orte_hnp_uri"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static void mpi_singleton_isolated(void)
{
    if (launched_by_mpiexec_or_srun() || getenv("OMPI_MCA_ess_singleton_isolated") ||
        getenv("OMPI_MCA_orte_tmpdir_base"))
        return; /* the user's settings, or Open MPI's default singleton */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    int n = snprintf(singleton_tmp, sizeof singleton_tmp, "%s/deltasoup-mpi.XXXXXX", tmp);
    if (n <= 0 || (size_t)n >= sizeof singleton_tmp || !mkdtemp(singleton_tmp)) {
        singleton_tmp[0] = 0;
        return; /* no private tree: Open MPI's default singleton (with its daemon) */
    }
    setenv("OMPI_MCA_orte_tmpdir_base", singleton_tmp, 1);
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 1);
    atexit(singleton_tmp_remove);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DS_EXIT_USAGE;
    }
    /* Help and version need no MPI (fast, and work on a login node). */
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("deltasoup %s\n", PACKAGE_VERSION);
        return 0;
    }
    int j = 0;
    while (j < N_JOBS && strcmp(jobs[j].name, argv[1]) != 0) j++;
    if (j == N_JOBS) {
        fprintf(stderr, "deltasoup: unknown job '%s' (deltasoup --help lists them)\n", argv[1]);
        return DS_EXIT_USAGE;
    }
    blas_pick_kernels(argv);
    mpi_avoid_sharedfp_sm();
    mpi_singleton_isolated();
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    ds_ctx ctx = {.comm = MPI_COMM_WORLD, .job = jobs[j].name};
    MPI_Comm_rank(ctx.comm, &ctx.rank);
    MPI_Comm_size(ctx.comm, &ctx.size);
    int rc = jobs[j].fn(&ctx, argc - 1, argv + 1);
    MPI_Finalize();
    return rc;
}
