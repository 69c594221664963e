/* Shared by the HDF5 targets: MPI is started once (a singleton, the readers
 * run under MPI_COMM_SELF) and finalized at exit; HDF5 stays quiet. */
#ifndef DS_TESTS_FUZZ_H5_MPI_H
#define DS_TESTS_FUZZ_H5_MPI_H
#include <mpi.h>
#include <stdlib.h>

static void fuzz_mpi_end(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) abort();
        atexit(fuzz_mpi_end);
    }
    return 0;
}
#endif
