/* Include once in a test program that initialises MPI: in a sanitizer build
 * Open MPI's own allocations read as leaks at MPI_Finalize (some from
 * components already unloaded, beyond any suppression file), so such a
 * program turns leak checking off for itself; ASAN_OPTIONS still overrides.
 * Test programs without MPI keep leak checking on. */
#ifndef DS_TESTS_MPI_ASAN_H
#define DS_TESTS_MPI_ASAN_H
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif
