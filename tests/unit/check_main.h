/* The Check programs' common parts: ds_check_case makes one TCase per area;
 * ds_check_run is the end of a main without MPI: run the suite, forking or
 * not as CK_FORK says, printing as CK_VERBOSITY says (normal by default;
 * verbose lists every test with its case), and give the exit status: 0 when
 * every test passed, 1 otherwise. */
#ifndef DS_TESTS_UNIT_CHECK_MAIN_H
#define DS_TESTS_UNIT_CHECK_MAIN_H
#include <check.h>

/* A TCase named after the area it tests, added to S: every Check program has
 * one per area, so that CK_RUN_CASE=NAME runs that area alone
 * (docs/TESTING.md). TIMEOUT_S > 0 sets the time limit of each test (forking
 * runs only), 0 keeps Check's default. */
static inline TCase *ds_check_case(Suite *s, const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);
    if (timeout_s > 0) tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

static inline int ds_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? 1 : 0;
}

#ifdef MPI_VERSION /* included after <mpi.h> */
/* The end of an MPI Check program's main (before MPI_Finalize): the suite
 * without forking (MPI), printed on rank 0 only; a failure on any rank of
 * comm fails the program on every rank (0 or 1). */
static inline int ds_check_run_mpi(Suite *s, int rank, MPI_Comm comm)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_ENV : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm);
    return failed ? 1 : 0;
}
#endif
#endif
