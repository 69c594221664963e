/* Unit tests of src/bitdelta.c: the default 1-bit set, --bits-for /
 * --dense-for, and the ratio accounting against byte counts worked out by
 * hand for Llama 2 7B (docs/bitdelta.md). */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <string.h>
#include "src/bitdelta.h"
#include "tests/unit/check_main.h"

static ds_tinfo ti(const char *name, int64_t r, int64_t c)
{
    ds_tinfo t = {.dtype = DS_DTYPE_BF16, .ndim = c ? 2 : 1, .shape = {r, c}};
    snprintf(t.name, sizeof t.name, "%s", name);
    return t;
}

/* The 7B tensor list written out independently of io/h5_model.c. */
static int llama7b(ds_tinfo *t)
{
    int n = 0;
    t[n++] = ti("model.embed_tokens.weight", 32000, 4096);
    t[n++] = ti("lm_head.weight", 32000, 4096);
    t[n++] = ti("model.norm.weight", 4096, 0);
    for (int l = 0; l < 32; l++) {
        char b[128];
        const char *att[] = {"q", "k", "v", "o"}, *mlp[] = {"gate", "up", "down"};
        for (int i = 0; i < 4; i++) {
            snprintf(b, sizeof b, "model.layers.%d.self_attn.%s_proj.weight", l, att[i]);
            t[n++] = ti(b, 4096, 4096);
        }
        for (int i = 0; i < 3; i++) {
            snprintf(b, sizeof b, "model.layers.%d.mlp.%s_proj.weight", l, mlp[i]);
            t[n++] = i == 2 ? ti(b, 4096, 11008) : ti(b, 11008, 4096);
        }
        snprintf(b, sizeof b, "model.layers.%d.input_layernorm.weight", l);
        t[n++] = ti(b, 4096, 0);
        snprintf(b, sizeof b, "model.layers.%d.post_attention_layernorm.weight", l);
        t[n++] = ti(b, 4096, 0);
    }
    return n;
}

static ds_tinfo T[3 + 32 * 9];
static ds_delta_entry E[3 + 32 * 9];

START_TEST(test_default_set)
{
    ds_tinfo a = ti("model.layers.3.self_attn.k_proj.weight", 8, 8);
    ck_assert(ds_delta_default_coded(&a));
    a = ti("model.layers.12.mlp.down_proj.weight", 8, 8);
    ck_assert(ds_delta_default_coded(&a));
    a = ti("model.embed_tokens.weight", 8, 8);
    ck_assert(!ds_delta_default_coded(&a));
    a = ti("lm_head.weight", 8, 8);
    ck_assert(!ds_delta_default_coded(&a));
    a = ti("model.layers.0.input_layernorm.weight", 8, 0);
    ck_assert(!ds_delta_default_coded(&a));
}
END_TEST

START_TEST(test_ratio_7b_default)
{
    int n = llama7b(T);
    ds_delta_options o = {.mode = DS_SCALE_TENSOR};
    ck_assert_int_eq(ds_delta_plan(n, T, &o, E), 0);
    ds_delta_sizes s;
    double r = ds_delta_ratio(n, E, &s);
    /* 6,738,415,616 parameters * 2 bytes. */
    ck_assert_uint_eq(s.full, 13476831232ull);
    /* 32 layers * (4 * 4096*4096 + 3 * 4096*11008) bits; 11008 = 172 words. */
    ck_assert_uint_eq(s.signs, 809500672ull);
    ck_assert_uint_eq(s.scales, 32u * 7u * 4u);
    /* embed + head 2 * 32000*4096*2, norms (65 * 4096) * 2 */
    ck_assert_uint_eq(s.dense, 524288000ull + 532480ull);
    ck_assert_double_eq_tol(r, 13476831232.0 / 1334322048.0, 1e-12);
    ck_assert(r >= 10.0);
}
END_TEST

START_TEST(test_ratio_7b_all_rows)
{
    int n = llama7b(T);
    const char *bits[] = {"model.embed_tokens.weight", "lm_head.weight"};
    ds_delta_options o = {.bits_for = bits, .n_bits_for = 2, .mode = DS_SCALE_ROW};
    ck_assert_int_eq(ds_delta_plan(n, T, &o, E), 0);
    ds_delta_sizes s;
    double r = ds_delta_ratio(n, E, &s);
    ck_assert_uint_eq(s.signs, 809500672ull + 2ull * 32000 * 64 * 8);
    /* rows: 32 * (4*4096 + 2*11008 + 4096) + 2 * 32000 */
    ck_assert_uint_eq(s.scales, (32ull * 42496 + 64000) * 4);
    ck_assert_uint_eq(s.dense, 532480ull);
    ck_assert_double_eq_tol(r, 13476831232.0 / 848496640.0, 1e-12);
    ck_assert(r >= 15.0);
}
END_TEST

START_TEST(test_padding_and_cols)
{
    /* 3 x 65: two words per row, the second holds one real bit. */
    ds_tinfo t = ti("model.layers.0.mlp.up_proj.weight", 3, 65);
    t.dtype = DS_DTYPE_F32;
    ds_delta_options o = {.mode = DS_SCALE_COL};
    ds_delta_entry e;
    ck_assert_int_eq(ds_delta_plan(1, &t, &o, &e), 0);
    ck_assert_int_eq(e.words_per_row, 2);
    ck_assert_int_eq(e.n_scales, 65);
    ds_delta_sizes s;
    ds_delta_ratio(1, &e, &s);
    ck_assert_uint_eq(s.signs, 3 * 2 * 8);
    ck_assert_uint_eq(s.scales, 65 * 4);
    ck_assert_uint_eq(s.full, 3 * 65 * 4);
}
END_TEST

START_TEST(test_globs)
{
    int n = llama7b(T);
    /* dense-for wins over bits-for; bits-for on a 1-D tensor is refused. */
    const char *bits[] = {"lm_head.weight"}, *dense[] = {"lm_head.*", "model.layers.1[0-9].*"};
    ds_delta_options o = {.bits_for = bits, .n_bits_for = 1, .dense_for = dense, .n_dense_for = 2};
    ck_assert_int_eq(ds_delta_plan(n, T, &o, E), 0);
    int coded = 0;
    for (int i = 0; i < n; i++) coded += E[i].coded;
    ck_assert_int_eq(coded, 22 * 7);
    const char *bad[] = {"model.norm.weight"};
    o = (ds_delta_options){.bits_for = bad, .n_bits_for = 1};
    ck_assert_int_eq(ds_delta_plan(n, T, &o, E), DS_EXIT_USAGE);
    ck_assert(strstr(ds_errmsg(), "model.norm.weight") != NULL);
    const char *none[] = {"nothing.*"};
    o = (ds_delta_options){.dense_for = none, .n_dense_for = 1};
    ck_assert_int_eq(ds_delta_plan(n, T, &o, E), DS_EXIT_USAGE);
    ds_scale_kind m;
    ck_assert_int_eq(ds_scale_kind_parse("col", &m), 0);
    ck_assert_int_eq(m, DS_SCALE_COL);
    ck_assert_int_eq(ds_scale_kind_parse("cols", &m), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("delta_plan");
    tcase_add_test(ds_check_case(s, "default", 0), test_default_set);
    TCase *ratio = ds_check_case(s, "ratio", 0);
    tcase_add_test(ratio, test_ratio_7b_default);
    tcase_add_test(ratio, test_ratio_7b_all_rows);
    tcase_add_test(ds_check_case(s, "padding", 0), test_padding_and_cols);
    tcase_add_test(ds_check_case(s, "globs", 0), test_globs);
    return ds_check_run(s);
}
