/* src/comm.h (MPI backend; NCCL when the build and the machine have it) and
 * src/device.h, under MPI at several rank counts. Expected values are
 * closed forms of the rank and index, exact in floating point. */
#include "config.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "src/comm.h"
#include "src/device.h"
#include "src/mpi_asan.h"
#include "tests/unit/check_main.h"

static ds_ctx ctx;

static unsigned char pattern(int rank, size_t i) { return (unsigned char)(rank * 31 + i * 7 + 3); }

static void run_allgather(ds_comm *c, size_t bytes)
{
    unsigned char *send = ds_malloc(bytes + 1), *recv = ds_calloc(bytes * (size_t)ctx.size + 1, 1);
    for (size_t i = 0; i < bytes; i++) send[i] = pattern(ctx.rank, i);
    ds_comm_allgather(c, send, recv, bytes);
    for (int r = 0; r < ctx.size; r++)
        for (size_t i = 0; i < bytes; i++) ck_assert_uint_eq(recv[(size_t)r * bytes + i], pattern(r, i));
    free(send);
    free(recv);
}

static void run_allreduce(ds_comm *c, size_t n, int in_place)
{
    float *f = ds_malloc(n * sizeof *f), *fr = in_place ? f : ds_malloc(n * sizeof *fr);
    double *d = ds_malloc(n * sizeof *d), *dr = in_place ? d : ds_malloc(n * sizeof *dr);
    for (size_t i = 0; i < n; i++) {
        f[i] = 0.5f * (float)(ctx.rank + 1) * (float)i;
        d[i] = 0.25 * (double)(ctx.rank + 1) - (double)i * 1024.0;
    }
    ds_comm_allreduce_sum_f32(c, f, fr, n);
    ds_comm_allreduce_sum_f64(c, d, dr, n);
    const double s = (double)ctx.size, tri = s * (s + 1) / 2; /* sum of rank + 1 */
    for (size_t i = 0; i < n; i++) {
        ck_assert_float_eq(fr[i], (float)(0.5 * tri * (double)i));
        ck_assert_double_eq(dr[i], 0.25 * tri - s * (double)i * 1024.0);
    }
    if (!in_place) {
        ck_assert_float_eq(f[n - 1], 0.5f * (float)(ctx.rank + 1) * (float)(n - 1)); /* send untouched */
        free(fr);
        free(dr);
    }
    free(f);
    free(d);
}

static void run_broadcast(ds_comm *c, size_t bytes)
{
    unsigned char *buf = ds_malloc(bytes);
    for (int root = 0; root < ctx.size; root++) {
        for (size_t i = 0; i < bytes; i++) buf[i] = ctx.rank == root ? pattern(root, i) : 0;
        ds_comm_broadcast(c, buf, bytes, root);
        for (size_t i = 0; i < bytes; i++) ck_assert_uint_eq(buf[i], pattern(root, i));
    }
    free(buf);
}

START_TEST(test_mpi_collectives)
{
    ds_comm *c;
    ck_assert_int_eq(ds_comm_init(&c, &ctx, DS_COMM_MPI), 0);
    ck_assert_int_eq(ds_comm_backend_of(c), DS_COMM_MPI);
    run_allgather(c, 37);
    run_allgather(c, 0);
    run_allreduce(c, 1000, 0);
    run_allreduce(c, 1000, 1);
    run_broadcast(c, 4099);
    ds_comm_free(c);
}
END_TEST

START_TEST(test_mpi_split_into_pieces)
{
    /* Buffers larger than one MPI call's piece go in several calls. */
    ds_comm *c;
    ck_assert_int_eq(ds_comm_init(&c, &ctx, DS_COMM_MPI), 0);
    ds_comm_set_max_chunk(c, 12);
    run_allgather(c, 37);
    run_allreduce(c, 101, 0);
    run_allreduce(c, 101, 1);
    run_broadcast(c, 50);
    ds_comm_free(c);
}
END_TEST

START_TEST(test_backend_names)
{
    ds_comm_backend b;
    ck_assert_int_eq(ds_comm_backend_parse("mpi", &b), 0);
    ck_assert_int_eq(b, DS_COMM_MPI);
    ck_assert_int_eq(ds_comm_backend_parse("nccl", &b), 0);
    ck_assert_int_eq(b, DS_COMM_NCCL);
    ck_assert_str_eq(ds_comm_backend_name(b), "nccl");
    ck_assert_int_eq(ds_comm_backend_parse("gloo", &b), DS_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "gloo"));
}
END_TEST

START_TEST(test_nccl_backend)
{
    /* Where NCCL and a GPU per rank exist it must work like MPI; elsewhere
     * every rank gets the same clear error. */
    ds_comm *c;
    int rc = ds_comm_init(&c, &ctx, DS_COMM_NCCL);
    if (rc == 0) {
        run_allgather(c, 37);
        run_allreduce(c, 1000, 0);
        run_broadcast(c, 4099);
        ds_comm_free(c);
        return;
    }
    ck_assert_ptr_null(c);
#ifdef DS_HAVE_NCCL
    ck_assert_int_eq(rc, DS_EXIT_FAIL);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "GPU"));
#else
    ck_assert_int_eq(rc, DS_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "no NCCL"));
#endif
}
END_TEST

START_TEST(test_device_select)
{
    ds_device d;
    ck_assert_int_eq(ds_device_select("cpu", &d), 0);
    ck_assert_int_eq(d, DS_DEVICE_CPU);
    ck_assert_int_eq(ds_device_select("tpu", &d), DS_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "tpu"));
    ck_assert_int_eq(ds_device_select(NULL, &d), 0);
    if (ds_device_gpu_count() > 0) {
        ck_assert_int_eq(d, DS_DEVICE_CUDA);
        ck_assert_int_eq(ds_device_select("cuda", &d), 0);
        ck_assert_str_eq(ds_device_name(d), "cuda");
    } else {
        ck_assert_int_eq(d, DS_DEVICE_CPU);
        ck_assert_int_eq(ds_device_select("cuda", &d), DS_EXIT_USAGE);
#ifdef DS_HAVE_CUDA
        ck_assert_ptr_nonnull(strstr(ds_errmsg(), "no GPU found"));
#else
        ck_assert_ptr_nonnull(strstr(ds_errmsg(), "no CUDA support"));
#endif
    }
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    ctx.comm = MPI_COMM_WORLD;
    ctx.job = "test_comm";
    MPI_Comm_rank(ctx.comm, &ctx.rank);
    MPI_Comm_size(ctx.comm, &ctx.size);
    Suite *s = suite_create("comm");
    TCase *mpi = ds_check_case(s, "mpi", 60);
    tcase_add_test(mpi, test_mpi_collectives);
    tcase_add_test(mpi, test_mpi_split_into_pieces);
    tcase_add_test(ds_check_case(s, "backend", 60), test_backend_names);
    tcase_add_test(ds_check_case(s, "nccl", 60), test_nccl_backend);
    tcase_add_test(ds_check_case(s, "device", 60), test_device_select);
    const int rc = ds_check_run_mpi(s, ctx.rank, ctx.comm);
    MPI_Finalize();
    return rc;
}
