/* The end of a Check program's main (programs without MPI): run the suite,
 * forking or not as CK_FORK says, and give the exit status: 0 when every
 * test passed, 1 otherwise. */
#ifndef DS_TESTS_UNIT_CHECK_MAIN_H
#define DS_TESTS_UNIT_CHECK_MAIN_H
#include <check.h>

static inline int ds_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? 1 : 0;
}
#endif
