/* Model checkpoint round trip, atomicity and refusals, run at 1, 2 and 4
 * ranks (tests/mpi/h5_model.sh). Every test is collective.
 *
 * usage: test_h5_model DIR   (files go to DIR/npN; model.h5 and ref.bin there
 * are kept for the Python reference check: ref.bin holds each tensor's
 * source values as float32 LE, tensors in name order, which rounded to the
 * tensor's dtype must give exactly the stored values). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_model.h"
#include "src/hash.h"
#include "src/shard.h"
#include "src/mpi_asan.h"
#include "tests/unit/check_main.h"

static char dir[2048];
static int rank, nranks;
static const ds_config cfg = {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                              .vocab_size = 40, .max_seq_len = 32, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                              .tied_embeddings = 0};

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The test model: tensors cycle through F32/F16/BF16; values are random with
 * a few that stress rounding (bf16 tie, f16 subnormal, -0). */
typedef struct {
    int n;
    ds_tinfo *t;
    float **ref;   /* source values */
    void **bits;   /* expected stored data */
    int *owner;
} test_model;

static void model_make(test_model *m)
{
    m->n = ds_model_llama_tensors(&cfg, DS_DTYPE_F32, &m->t);
    m->ref = ds_calloc((size_t)m->n, sizeof(float *));
    m->bits = ds_calloc((size_t)m->n, sizeof(void *));
    m->owner = ds_calloc((size_t)m->n, sizeof(int));
    int64_t *sizes = ds_calloc((size_t)m->n, sizeof(int64_t));
    for (int i = 0; i < m->n; i++) {
        ds_tinfo *t = &m->t[i];
        t->dtype = (ds_dtype[]){DS_DTYPE_F32, DS_DTYPE_F16, DS_DTYPE_BF16}[i % 3];
        size_t n = (size_t)ds_tinfo_numel(t);
        uint64_t s = 1000 + (uint64_t)i;
        float *r = m->ref[i] = ds_malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            r[j] = (float)((double)(splitmix(&s) >> 11) * 0x1p-53 * 4.0 - 2.0) * (1.0f + (float)(j % 7));
        r[0] = -0.0f;
        if (n > 3) {
            r[1] = 1.0f + 0x1p-8f; /* bf16 tie: rounds to even (1.0) */
            r[2] = 1e-6f;          /* f16 subnormal */
            r[3] = -3.14159265f;
        }
        m->bits[i] = ds_malloc(ds_tinfo_bytes(t));
        ds_from_f32(t->dtype, r, m->bits[i], n);
        sizes[i] = (int64_t)ds_tinfo_bytes(t);
    }
    ds_shard_by_size(m->n, sizes, nranks, m->owner);
    free(sizes);
}

static void model_free(test_model *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->ref[i]);
        free(m->bits[i]);
    }
    free(m->ref);
    free(m->bits);
    free(m->owner);
    free(m->t);
}

static void tok_make(ds_tokenizer *tok)
{
    const char *pieces[40];
    int lengths[40];
    float scores[40];
    char store[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(store[i], sizeof store[i], "t%d", i);
        pieces[i] = store[i];
        lengths[i] = (int)strlen(store[i]);
        scores[i] = -0.25f * (float)i;
    }
    pieces[5] = "";
    lengths[5] = 0;
    pieces[6] = "a\0b"; /* bytes, not C strings: a NUL inside survives */
    lengths[6] = 3;
    ck_assert_int_eq(ds_tokenizer_from_arrays(40, 7, pieces, lengths, scores, tok), 0);
}

/* Write m to path; each rank writes what it owns, in several source forms. */
static int model_write(const char *path, test_model *m, int overwrite, int fail_rank, int skip)
{
    ds_tokenizer tok;
    tok_make(&tok);
    ds_model_file *f;
    int rc = ds_model_create(path, MPI_COMM_WORLD, &cfg, m->n, m->t, &tok, overwrite, &f);
    ds_tokenizer_free(&tok);
    if (rc) return rc;
    for (int i = 0; i < m->n && !rc; i++) {
        if (m->owner[i] != rank || i == skip) continue;
        if (i % 2 == 0) {
            rc = ds_model_write_tensor(f, m->t[i].name, DS_DTYPE_F32, m->ref[i]);
        } else {
            rc = ds_model_write_tensor(f, m->t[i].name, m->t[i].dtype, m->bits[i]);
        }
    }
    if (rank == fail_rank) rc = ds_err(DS_EXIT_FAIL, "test: rank %d fails on purpose", rank);
    return ds_model_commit(f, rc, NULL);
}

static void path_in_dir(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

/* SHA-256 of a whole file, identical on every rank (rank 0 reads). */
static void file_digest(const char *path, ds_digest *d)
{
    memset(d, 0, sizeof *d);
    if (rank == 0) {
        char *data;
        size_t len;
        if (ds_read_file(path, &data, &len) == 0) {
            ds_sha256_buf(data, len, d);
            free(data);
        }
    }
    MPI_Bcast(d, sizeof *d, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static int exists_all(const char *path)
{
    int e = ds_file_exists(path);
    MPI_Bcast(&e, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return e;
}

START_TEST(test_roundtrip)
{
    test_model m;
    model_make(&m);
    char path[4096];
    path_in_dir(path, sizeof path, "model.h5");
    ck_assert_int_eq(model_write(path, &m, 1, -1, -1), 0);
    ck_assert(exists_all(path));

    /* The recorded hash, from the expected bytes, computed here without
     * ds_content_hash: SHA-256 over the entry digests in name order. */
    ds_sha256 *h = ds_sha256_new();
    for (int i = 0; i < m.n; i++) {
        ds_digest d;
        ds_entry_digest(&m.t[i], m.bits[i], &d);
        ds_sha256_update(h, d.b, 32);
    }
    ds_digest want;
    char want_hex[65];
    ds_sha256_final(h, &want);
    ds_digest_hex(&want, want_hex);

    ds_model_file *f;
    ck_assert_int_eq(ds_model_open(path, MPI_COMM_WORLD, &f), 0);
    const ds_model_meta *meta = ds_model_get_meta(f);
    ck_assert_str_eq(meta->content_sha256, want_hex);
    ck_assert_int_eq(meta->format_version, DS_MODEL_FORMAT_VERSION);
    ck_assert_mem_eq(&meta->cfg, &cfg, sizeof cfg);
    ck_assert_int_eq(meta->n_tensors, m.n);
    ck_assert(meta->has_tokenizer);
    for (int i = 0; i < m.n; i++) {
        const ds_tinfo *t = &meta->tensors[i];
        ck_assert_str_eq(t->name, m.t[i].name);
        ck_assert_int_eq(t->dtype, m.t[i].dtype);
        ck_assert_int_eq(t->ndim, m.t[i].ndim);
        ck_assert_mem_eq(t->shape, m.t[i].shape, sizeof(int64_t) * (size_t)t->ndim);
        /* Every rank reads every tensor: reads are independent. */
        size_t n = (size_t)ds_tinfo_numel(t);
        void *got = ds_malloc(ds_tinfo_bytes(t));
        ck_assert_int_eq(ds_model_read_tensor(f, t->name, t->dtype, got), 0);
        ck_assert_mem_eq(got, m.bits[i], ds_tinfo_bytes(t));
        float *g32 = ds_malloc(n * sizeof(float)), *w32 = ds_malloc(n * sizeof(float));
        ck_assert_int_eq(ds_model_read_tensor(f, t->name, DS_DTYPE_F32, g32), 0);
        ds_to_f32(t->dtype, m.bits[i], w32, n);
        ck_assert_mem_eq(g32, w32, n * sizeof(float));
        if (t->ndim == 2 && t->shape[0] > 5) {
            int64_t cols = t->shape[1];
            uint16_t *rows = ds_malloc(sizeof(uint16_t) * 3 * (size_t)cols), *wr = ds_malloc(sizeof(uint16_t) * 3 * (size_t)cols);
            ck_assert_int_eq(ds_model_read_rows(f, t->name, DS_DTYPE_BF16, 2, 3, rows), 0);
            ds_from_f32(DS_DTYPE_BF16, w32 + 2 * cols, wr, 3 * (size_t)cols);
            ck_assert_mem_eq(rows, wr, sizeof(uint16_t) * 3 * (size_t)cols);
            ck_assert_int_eq(ds_model_read_rows(f, t->name, DS_DTYPE_F32, t->shape[0] - 1, 2, g32), DS_EXIT_FAIL);
            free(rows);
            free(wr);
        }
        free(got);
        free(g32);
        free(w32);
    }
    ck_assert_int_eq(ds_model_read_tensor(f, "model.nope.weight", DS_DTYPE_F32, NULL), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), "model.nope.weight"), NULL);
    ds_tokenizer tok, want_tok;
    ck_assert_int_eq(ds_model_read_tokenizer(f, &tok), 0);
    tok_make(&want_tok);
    ck_assert_int_eq(tok.vocab_size, 40);
    ck_assert_int_eq(tok.max_token_length, 7);
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(tok.lengths[i], want_tok.lengths[i]);
        ck_assert_mem_eq(tok.pieces[i], want_tok.pieces[i], (size_t)tok.lengths[i]);
        ck_assert_float_eq(tok.scores[i], want_tok.scores[i]);
    }
    ds_tokenizer_free(&tok);
    ds_tokenizer_free(&want_tok);
    ds_model_close(f);

    /* The source values for the Python reference check. */
    if (rank == 0) {
        char ref[4096];
        path_in_dir(ref, sizeof ref, "ref.bin");
        FILE *fp = fopen(ref, "wb");
        ck_assert_ptr_ne(fp, NULL);
        for (int i = 0; i < m.n; i++) fwrite(m.ref[i], sizeof(float), (size_t)ds_tinfo_numel(&m.t[i]), fp);
        ck_assert_int_eq(fclose(fp), 0);
    }
    model_free(&m);
}
END_TEST

START_TEST(test_refuse_existing)
{
    test_model m;
    model_make(&m);
    char path[4096], tmp[4200];
    path_in_dir(path, sizeof path, "model.h5");
    ds_out_tmpname(path, tmp, sizeof tmp);
    ds_digest before, after;
    file_digest(path, &before);
    ds_model_file *f = NULL;
    ds_err_clear();
    ck_assert_int_eq(ds_model_create(path, MPI_COMM_WORLD, &cfg, m.n, m.t, NULL, 0, &f), DS_EXIT_OUTPUT);
    ck_assert_ptr_eq(f, NULL);
    /* Rank 0 checks for the output and sets the message; every rank gets the code. */
    if (rank == 0) ck_assert_ptr_ne(strstr(ds_errmsg(), "model.h5: output exists"), NULL);
    file_digest(path, &after);
    ck_assert_mem_eq(before.b, after.b, 32);
    ck_assert(!exists_all(tmp));
    model_free(&m);
}
END_TEST

START_TEST(test_failure_is_atomic)
{
    test_model m;
    model_make(&m);
    char path[4096], tmp[4200], fresh[4096], ftmp[4200];
    path_in_dir(path, sizeof path, "model.h5");
    path_in_dir(fresh, sizeof fresh, "fresh.h5");
    ds_out_tmpname(path, tmp, sizeof tmp);
    ds_out_tmpname(fresh, ftmp, sizeof ftmp);
    ds_digest before, after;
    file_digest(path, &before);
    /* The last rank fails before commit: the existing file stays as it was. */
    ck_assert_int_eq(model_write(path, &m, 1, nranks - 1, -1), DS_EXIT_FAIL);
    file_digest(path, &after);
    ck_assert_mem_eq(before.b, after.b, 32);
    ck_assert(!exists_all(tmp));
    /* Same for a new name: nothing appears. */
    ck_assert_int_eq(model_write(fresh, &m, 0, nranks - 1, -1), DS_EXIT_FAIL);
    ck_assert(!exists_all(fresh));
    ck_assert(!exists_all(ftmp));
    /* A tensor nobody wrote is an error at commit, naming the tensor. */
    ck_assert_int_eq(model_write(fresh, &m, 0, -1, 4), DS_EXIT_FAIL);
    ck_assert_ptr_ne(strstr(ds_errmsg(), m.t[4].name), NULL);
    ck_assert(!exists_all(fresh));
    ck_assert(!exists_all(ftmp));
    model_free(&m);
}
END_TEST

START_TEST(test_bad_writes)
{
    test_model m;
    model_make(&m);
    char path[4096];
    path_in_dir(path, sizeof path, "bad.h5");
    ds_model_file *f = NULL;
    /* A shape that does not fit the config is refused before anything is written. */
    m.t[3].shape[0] += 1;
    ck_assert_int_eq(ds_model_create(path, MPI_COMM_WORLD, &cfg, m.n, m.t, NULL, 1, &f), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), m.t[3].name), NULL);
    m.t[3].shape[0] -= 1;
    /* A missing tensor too. */
    ck_assert_int_eq(ds_model_create(path, MPI_COMM_WORLD, &cfg, m.n - 1, m.t, NULL, 1, &f), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), m.t[m.n - 1].name), NULL);
    ck_assert(!exists_all(path));
    /* Writing a tensor twice is caught by its writer. */
    ck_assert_int_eq(ds_model_create(path, MPI_COMM_WORLD, &cfg, m.n, m.t, NULL, 1, &f), 0);
    int rc = 0;
    if (rank == 0) {
        ck_assert_int_eq(ds_model_write_tensor(f, m.t[0].name, DS_DTYPE_F32, m.ref[0]), 0);
        rc = ds_model_write_tensor(f, m.t[0].name, DS_DTYPE_F32, m.ref[0]);
        ck_assert_int_eq(rc, DS_EXIT_FAIL);
        ck_assert_ptr_ne(strstr(ds_errmsg(), "twice"), NULL);
    }
    ds_model_discard(f);
    ck_assert(!exists_all(path));
    model_free(&m);
}
END_TEST

START_TEST(test_bad_reads)
{
    char path[4096], trunc[4096], text[4096];
    path_in_dir(path, sizeof path, "model.h5");
    path_in_dir(trunc, sizeof trunc, "truncated.h5");
    path_in_dir(text, sizeof text, "text.h5");
    if (rank == 0) {
        char *data;
        size_t len;
        ck_assert_int_eq(ds_read_file(path, &data, &len), 0);
        FILE *fp = fopen(trunc, "wb");
        fwrite(data, 1, len / 2, fp);
        fclose(fp);
        free(data);
        fp = fopen(text, "w");
        fputs("not a model\n", fp);
        fclose(fp);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    ds_model_file *f = NULL;
    ck_assert_int_eq(ds_model_open(trunc, MPI_COMM_WORLD, &f), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), trunc), NULL);
    ck_assert_ptr_eq(strchr(ds_errmsg(), '\n'), NULL);
    ck_assert_int_eq(ds_model_open(text, MPI_COMM_WORLD, &f), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), "not an HDF5 file"), NULL);
    path_in_dir(text, sizeof text, "missing.h5");
    ck_assert_int_eq(ds_model_open(text, MPI_COMM_WORLD, &f), DS_EXIT_INPUT);
    ck_assert_ptr_ne(strstr(ds_errmsg(), "missing.h5"), NULL);
    ck_assert_ptr_eq(f, NULL);
}
END_TEST

START_TEST(test_h5_types)
{
    /* The 16-bit float types as the format describes them. */
    size_t spos, epos, esize, mpos, msize;
    hid_t b = ds_h5_type(DS_DTYPE_BF16), h = ds_h5_type(DS_DTYPE_F16);
    H5Tget_fields(b, &spos, &epos, &esize, &mpos, &msize);
    ck_assert_uint_eq(spos, 15);
    ck_assert_uint_eq(epos, 7);
    ck_assert_uint_eq(esize, 8);
    ck_assert_uint_eq(mpos, 0);
    ck_assert_uint_eq(msize, 7);
    ck_assert_uint_eq(H5Tget_ebias(b), 127);
    ck_assert_uint_eq(H5Tget_size(b), 2);
    H5Tget_fields(h, &spos, &epos, &esize, &mpos, &msize);
    ck_assert_uint_eq(epos, 10);
    ck_assert_uint_eq(msize, 10);
    ck_assert_uint_eq(H5Tget_ebias(h), 15);
    /* HDF5's own conversion of our bf16 to float32 is exact for every
     * finite bit pattern (what h5py's astype('f4') and h5dump rely on). */
    uint16_t *in = ds_malloc(65536 * sizeof(float));
    float *out = (float *)in;
    int k = 0;
    for (uint32_t v = 0; v < 65536; v++)
        if ((v & 0x7f80u) != 0x7f80u) in[k++] = (uint16_t)v;
    uint16_t *copy = ds_malloc((size_t)k * 2);
    memcpy(copy, in, (size_t)k * 2);
    ck_assert_int_ge(H5Tconvert(b, H5T_NATIVE_FLOAT, (size_t)k, in, NULL, H5P_DEFAULT), 0);
    for (int i = 0; i < k; i++) ck_assert_msg(out[i] == ds_bf16_to_f32(copy[i]) && signbit(out[i]) == signbit(ds_bf16_to_f32(copy[i])),
                                              "bf16 0x%04x -> %g", copy[i], (double)out[i]);
    free(in);
    free(copy);
    ck_assert(ds_h5_float_decimal(1e-5f) == 1e-5);
    ck_assert(ds_h5_float_decimal(10000.0f) == 10000.0);
}
END_TEST

/* The cases "atomic" and "bad-reads" use the model.h5 that test_roundtrip
 * writes: run alone (CK_RUN_CASE) in a fresh DIR, they write it first, the
 * same way. In a full run it is there already and this does nothing. */
static void need_model(void)
{
    char path[4096];
    path_in_dir(path, sizeof path, "model.h5");
    if (exists_all(path)) return;
    test_model m;
    model_make(&m);
    if (model_write(path, &m, 1, -1, -1)) MPI_Abort(MPI_COMM_WORLD, 1);
    model_free(&m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    /* One folder per rank count: the runs at 1, 2 and 4 ranks leave three
     * models written with different tensor owners. */
    const char *base = argc > 1 ? argv[1] : "test_h5_model.d";
    snprintf(dir, sizeof dir, "%s/np%d", base, nranks);
    if (rank == 0) {
        mkdir(base, 0777);
        mkdir(dir, 0777);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    Suite *s = suite_create("h5_model");
    tcase_add_test(ds_check_case(s, "types", 60), test_h5_types);
    /* test_refuse_existing needs the model test_roundtrip writes. */
    TCase *roundtrip = ds_check_case(s, "roundtrip", 60);
    tcase_add_test(roundtrip, test_roundtrip);
    tcase_add_test(roundtrip, test_refuse_existing);
    TCase *atomic = ds_check_case(s, "atomic", 60);
    tcase_add_unchecked_fixture(atomic, need_model, NULL);
    tcase_add_test(atomic, test_failure_is_atomic);
    tcase_add_test(ds_check_case(s, "bad-writes", 60), test_bad_writes);
    TCase *bad_reads = ds_check_case(s, "bad-reads", 60);
    tcase_add_unchecked_fixture(bad_reads, need_model, NULL);
    tcase_add_test(bad_reads, test_bad_reads);
    SRunner *sr = srunner_create(s);
    /* No fork under MPI; the tests are collective and depend on each other's
     * files, so one failure ends the run on this rank (MPI_Abort ends all). */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_ENV : CK_SILENT);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (nf) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    return 0;
}
