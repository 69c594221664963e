/* Unit tests of src/: dtype conversions, sharding, hashing, glob, parsing. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"
#include "src/hash.h"
#include "src/shard.h"
#include "tests/unit/check_main.h"

START_TEST(test_bf16_roundtrip)
{
    /* Every bf16 bit pattern that is finite converts to f32 and back exactly. */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80u) == 0x7f80u) continue;
        float f = ds_bf16_to_f32((uint16_t)h);
        ck_assert_uint_eq(ds_f32_to_bf16(f), h);
    }
    /* Round to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7. */
    ck_assert_uint_eq(ds_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    ck_assert_uint_eq(ds_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}
END_TEST

START_TEST(test_f16_roundtrip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u) continue;
        float f = ds_f16_to_f32((uint16_t)h);
        ck_assert_uint_eq(ds_f32_to_f16(f), h);
    }
    ck_assert_float_eq(ds_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(ds_f16_to_f32(0x0001), 0x1p-24f);
    ck_assert_uint_eq(ds_f32_to_f16(65520.0f), 0x7c00); /* rounds to Inf */
    ck_assert_uint_eq(ds_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(ds_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie to even */
}
END_TEST

START_TEST(test_shard_by_size)
{
    int64_t sizes[] = {5, 100, 7, 100, 50, 1};
    int owner[6];
    ds_shard_by_size(6, sizes, 2, owner);
    /* largest first: 100(#1)->0, 100(#3)->1, 50->0 (tie: lowest rank), 7->1, 5->1, 1->1 */
    int want[6] = {1, 0, 1, 1, 0, 1};
    for (int i = 0; i < 6; i++) ck_assert_int_eq(owner[i], want[i]);
    int64_t lo, hi, sum = 0;
    for (int r = 0; r < 3; r++) {
        ds_shard_range(10, r, 3, &lo, &hi);
        sum += hi - lo;
    }
    ck_assert_int_eq(sum, 10);
    ds_shard_range(10, 0, 3, &lo, &hi);
    ck_assert_int_eq(hi, 4);
}
END_TEST

START_TEST(test_sha256_known)
{
    ds_digest d;
    char hex[65];
    ds_sha256_buf("abc", 3, &d); /* FIPS 180-2 example */
    ds_digest_hex(&d, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ds_digest e;
    ck_assert_int_eq(ds_digest_parse(hex, &e), 0);
    ck_assert_mem_eq(d.b, e.b, 32);
    ck_assert_int_ne(ds_digest_parse("xyz", &e), 0);
}
END_TEST

START_TEST(test_entry_digest_layout)
{
    /* The entry digest is SHA-256 of name\0 dtype\0 ndim(u32) dims(u64) data. */
    ds_tinfo t = {.name = "a", .dtype = DS_DTYPE_F32, .ndim = 1, .shape = {2}};
    float v[2] = {1.0f, -2.0f};
    unsigned char buf[64];
    size_t o = 0;
    memcpy(buf + o, "a\0F32\0", 6); o += 6;
    uint32_t nd = 1; memcpy(buf + o, &nd, 4); o += 4;
    uint64_t d0 = 2; memcpy(buf + o, &d0, 8); o += 8;
    memcpy(buf + o, v, 8); o += 8;
    ds_digest a, b;
    ds_entry_digest(&t, v, &a);
    ds_sha256_buf(buf, o, &b);
    ck_assert_mem_eq(a.b, b.b, 32);
}
END_TEST

/* ds_sha256_async (one worker thread kept until _end): many pieces through
 * two buffers used in turn, as compress streams a tensor, hash like one
 * update of the whole; an async hash with no update is the empty one. */
START_TEST(test_sha256_async)
{
    enum { N = 1 << 16, P = 1000 };
    static unsigned char all[N], piece[2][P];
    for (int i = 0; i < N; i++) all[i] = (unsigned char)(i * 131 + (i >> 7));
    ds_digest want, got;
    ds_sha256_buf(all, N, &want);
    ds_sha256_async *a = ds_sha256_async_new(ds_sha256_new());
    for (int off = 0, k = 0; off < N; off += P, k++) {
        int n = N - off < P ? N - off : P;
        memcpy(piece[k & 1], all + off, (size_t)n); /* piece k - 2's buffer: its hash is done */
        ds_sha256_async_update(a, piece[k & 1], (size_t)n);
    }
    ds_sha256_final(ds_sha256_async_end(a), &got);
    ck_assert_mem_eq(got.b, want.b, 32);
    ds_sha256_buf("", 0, &want);
    ds_sha256_final(ds_sha256_async_end(ds_sha256_async_new(ds_sha256_new())), &got);
    ck_assert_mem_eq(got.b, want.b, 32);
}
END_TEST

START_TEST(test_parse_and_glob)
{
    long v;
    double d;
    ck_assert_int_eq(ds_parse_int("--steps", "200", 0, 1000, &v), 0);
    ck_assert_int_eq(v, 200);
    ck_assert_int_eq(ds_parse_int("--steps", "20x", 0, 1000, &v), DS_EXIT_USAGE);
    ck_assert_int_eq(ds_parse_int("--steps", "-1", 0, 1000, &v), DS_EXIT_USAGE);
    ck_assert_int_eq(ds_parse_double("--lr", "1e-4", 0, 1, &d), 0);
    ck_assert_int_eq(ds_parse_double("--lr", "nan", 0, 1, &d), DS_EXIT_USAGE);
    ck_assert(ds_glob_match("model.layers.*.mlp.*", "model.layers.3.mlp.up_proj.weight"));
    ck_assert(!ds_glob_match("*.norm.*", "model.embed_tokens.weight"));
    ds_dtype t;
    ck_assert_int_eq(ds_dtype_parse("BF16", &t), 0);
    ck_assert_int_eq(t, DS_DTYPE_BF16);
    ck_assert_int_eq(ds_dtype_parse("F8", &t), -1);
}
END_TEST

START_TEST(test_nonfinite)
{
    float f[3] = {1, INFINITY, 2};
    ck_assert_int_eq(ds_find_nonfinite(DS_DTYPE_F32, f, 3), 1);
    uint16_t b[2] = {0x3f80, 0x7fc0};
    ck_assert_int_eq(ds_find_nonfinite(DS_DTYPE_BF16, b, 2), 1);
    uint16_t h[2] = {0x3c00, 0x3c00};
    ck_assert_int_eq(ds_find_nonfinite(DS_DTYPE_F16, h, 2), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    tcase_add_test(ds_check_case(s, "bf16", 0), test_bf16_roundtrip);
    tcase_add_test(ds_check_case(s, "f16", 0), test_f16_roundtrip);
    tcase_add_test(ds_check_case(s, "shard", 0), test_shard_by_size);
    TCase *hash = ds_check_case(s, "hash", 0);
    tcase_add_test(hash, test_sha256_known);
    tcase_add_test(hash, test_entry_digest_layout);
    tcase_add_test(hash, test_sha256_async);
    tcase_add_test(ds_check_case(s, "parse", 0), test_parse_and_glob);
    tcase_add_test(ds_check_case(s, "nonfinite", 0), test_nonfinite);
    return ds_check_run(s);
}
