/* Unit tests of io/safetensors and io/llama2c: header layout against a
 * hand-written expected header, every malformed header we know of (and every
 * file in tests/data/safetensors_bad/) rejected with a clean message, mmap
 * reading and streaming writing, shard sets, config.json, and the llama2.c
 * reader against a naive element-by-element reference of the layout. */
#include "config.h"
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "tests/unit/check_main.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ds-test-st-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(tmpdir);
}

static char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A file image: 8-byte length of json, json, then data_len bytes of 0x11. */
static unsigned char *mk(const char *json, size_t data_len, size_t *size)
{
    size_t n = strlen(json);
    *size = 8 + n + data_len;
    unsigned char *b = malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    memset(b + 8 + n, 0x11, data_len);
    return b;
}

static int parse_json(const char *json, size_t data_len)
{
    size_t size;
    unsigned char *b = mk(json, data_len, &size);
    ds_st_header h;
    ds_err_clear();
    int rc = ds_st_parse("x.safetensors", b, size, &h);
    if (rc == 0) ds_st_header_free(&h);
    free(b);
    return rc;
}

START_TEST(test_layout_known_header)
{
    ds_tinfo t[2] = {{.name = "b", .dtype = DS_DTYPE_F32, .ndim = 1, .shape = {2}},
                     {.name = "a", .dtype = DS_DTYPE_BF16, .ndim = 2, .shape = {1, 3}}};
    const char *mk_[] = {"format"}, *mv[] = {"pt"};
    char *head;
    size_t hl;
    ds_tinfo *sorted;
    uint64_t *off, fsize;
    ck_assert_int_eq(ds_st_layout(2, t, 1, mk_, mv, &head, &hl, &sorted, &off, &fsize), 0);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[1,3],"
                       "\"data_offsets\":[0,6]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[6,14]}}";
    size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
    ck_assert_uint_eq(hl, 8 + padded);
    ck_assert_uint_eq((unsigned char)head[0], padded);
    for (int i = 1; i < 8; i++) ck_assert_int_eq(head[i], 0);
    ck_assert(memcmp(head + 8, want, wl) == 0);
    for (size_t i = wl; i < padded; i++) ck_assert_int_eq(head[8 + i], ' ');
    ck_assert_str_eq(sorted[0].name, "a");
    ck_assert_uint_eq(off[0], hl);
    ck_assert_uint_eq(off[1], hl + 6);
    ck_assert_uint_eq(fsize, hl + 14);
    /* And it parses back. */
    unsigned char *img = calloc(1, fsize);
    memcpy(img, head, hl);
    ds_st_header h;
    ck_assert_int_eq(ds_st_parse("img", img, fsize, &h), 0);
    ck_assert_int_eq(h.n, 2);
    ck_assert_int_eq(h.n_meta, 1);
    ck_assert_str_eq(h.meta_keys[0], "format");
    ck_assert_str_eq(h.meta_vals[0], "pt");
    ck_assert_str_eq(h.tensors[1].info.name, "b");
    ck_assert_int_eq(h.tensors[1].info.dtype, DS_DTYPE_F32);
    ck_assert_uint_eq(h.tensors[1].begin, 6);
    ck_assert_int_eq(ds_st_header_find(&h, "a"), 0);
    ck_assert_int_eq(ds_st_header_find(&h, "c"), -1);
    ds_st_header_free(&h);
    free(img);
    free(head);
    free(sorted);
    free(off);
}
END_TEST

START_TEST(test_layout_escapes_names)
{
    ds_tinfo t = {.name = "we\"ird\\na\x01me", .dtype = DS_DTYPE_U8, .ndim = 1, .shape = {3}};
    char *head;
    size_t hl;
    ds_tinfo *sorted;
    uint64_t *off, fsize;
    ck_assert_int_eq(ds_st_layout(1, &t, 0, NULL, NULL, &head, &hl, &sorted, &off, &fsize), 0);
    unsigned char *img = calloc(1, fsize);
    memcpy(img, head, hl);
    ds_st_header h;
    ck_assert_int_eq(ds_st_parse("img", img, fsize, &h), 0);
    ck_assert_str_eq(h.tensors[0].info.name, t.name);
    ds_st_header_free(&h);
    free(img);
    free(head);
    free(sorted);
    free(off);
    ds_tinfo dup[2] = {t, t};
    ck_assert_int_eq(ds_st_layout(2, dup, 0, NULL, NULL, &head, &hl, &sorted, &off, &fsize), DS_EXIT_INPUT);
}
END_TEST

/* Each malformed header: the exit code is DS_EXIT_INPUT and the message names
 * the file and, where there is one, the tensor. */
static const struct {
    const char *json;
    size_t data_len;
    const char *msg;
} bad[] = {
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "tensor t: data_offsets [0, 8) run past"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "trailing garbage"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "tensor t: shape [3] of F32 needs 12"},
    {"{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor t: unknown or unsupported dtype"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "tensor u: data_offsets [4, 12) overlap tensor t"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "tensor t: data bytes [0, 4) before it"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "duplicate"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "invalid header JSON"},
    {"{\"t\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "invalid header JSON"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "tensor t: shape[0] is not"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "tensor t: data_offsets must be"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "tensor t: data_offsets is not"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "tensor t: 5 dimensions"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
     "tensor t: shape overflows"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "tensor t: unknown field 'x'"},
    {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor t: missing data_offsets"},
    {"{\"t\":[1]}", 0, "tensor t: entry is not an object"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k'"},
    {"[1,2]", 0, "not a JSON object"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "empty name"},
};

START_TEST(test_bad_headers)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_json(bad[i].json, bad[i].data_len);
        if (rc != DS_EXIT_INPUT || !strstr(ds_errmsg(), bad[i].msg) || strncmp(ds_errmsg(), "x.safetensors: ", 15))
            ck_abort_msg("case %zu: rc %d, message '%s', want '%s'", i, rc, ds_errmsg(), bad[i].msg);
    }
    /* Good ones, for contrast: an empty model, and zero-size tensors. */
    ck_assert_int_eq(parse_json("{}", 0), 0);
    ck_assert_int_eq(parse_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                                "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}   ", 1), 0);
}
END_TEST

START_TEST(test_bad_lengths)
{
    ds_st_header h;
    unsigned char b[16] = {0};
    ck_assert_int_eq(ds_st_parse("f", b, 7, &h), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "f: truncated"));
    b[0] = 9; /* 9 bytes of header in a 16-byte file */
    ck_assert_int_eq(ds_st_parse("f", b, 16, &h), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "runs past the end"));
    memset(b, 0xff, 8); /* 2^64 - 1 */
    ck_assert_int_eq(ds_st_parse("f", b, 16, &h), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "absurd"));
    memset(b, 0, 8);
    b[0] = 8; /* header of 8 zero bytes */
    ck_assert_int_eq(ds_st_parse("f", b, 16, &h), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "not a JSON object"));
}
END_TEST

static const char *srcdir(void)
{
    const char *s = getenv("top_srcdir");
    return s ? s : DS_TOP_SRCDIR;
}

START_TEST(test_bad_corpus)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/data/safetensors_bad", srcdir());
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ds_st_file *f = NULL;
        ds_err_clear();
        int rc = ds_st_open(p, &f);
        ck_assert_msg(rc == DS_EXIT_INPUT && f == NULL, "%s: expected a clean error, got rc %d", e->d_name, rc);
        ck_assert_msg(strncmp(ds_errmsg(), p, strlen(p)) == 0, "%s: message does not name the file: %s", e->d_name,
                      ds_errmsg());
        n++;
    }
    closedir(d);
    ck_assert_int_ge(n, 10);
}
END_TEST

START_TEST(test_write_read)
{
    /* Three tensors written out of order through two writers (as two ranks
     * would), then mmap'ed back. */
    float a[6] = {1, -2, 3.5f, 0, INFINITY, -0.0f};
    uint16_t b[3] = {0x3f80, 0xbf80, 0x7fc0};
    uint8_t c[1] = {7};
    ds_tinfo t[3] = {{.name = "model.b", .dtype = DS_DTYPE_BF16, .ndim = 1, .shape = {3}},
                     {.name = "model.a", .dtype = DS_DTYPE_F32, .ndim = 2, .shape = {2, 3}},
                     {.name = "c", .dtype = DS_DTYPE_U8, .ndim = 0}};
    const char *p = tpath("w.safetensors");
    ds_st_writer *w0, *w1;
    ck_assert_int_eq(ds_st_writer_open(p, 1, 3, t, 0, NULL, NULL, &w0), 0);
    ck_assert_int_eq(ds_st_writer_open(p, 0, 3, t, 0, NULL, NULL, &w1), 0);
    ck_assert_int_eq(ds_st_writer_put(w1, "model.b", b), 0);
    ck_assert_int_eq(ds_st_writer_put(w0, "model.a", a), 0);
    ck_assert_int_eq(ds_st_writer_put(w0, "c", c), 0);
    ck_assert_int_eq(ds_st_writer_put(w0, "nope", c), DS_EXIT_FAIL);
    ck_assert_int_eq(ds_st_writer_close(w0), 0);
    ck_assert_int_eq(ds_st_writer_close(w1), 0);
    ds_st_file *f;
    ck_assert_int_eq(ds_st_open(p, &f), 0);
    ck_assert_int_eq(f->h.n, 3);
    ck_assert_int_eq(f->h.data_start % 8, 0);
    const void *data;
    void *owned;
    int i = ds_st_header_find(&f->h, "model.a");
    /* Sorted by name, "c" (1 byte) comes first: model.a starts at an odd
     * offset and is viewed through an aligned copy. */
    ds_st_view(f, i, &data, &owned);
    ck_assert_ptr_nonnull(owned);
    ck_assert(memcmp(data, a, sizeof a) == 0);
    free(owned);
    ds_st_view(f, ds_st_header_find(&f->h, "model.b"), &data, &owned);
    ck_assert(memcmp(data, b, sizeof b) == 0);
    free(owned);
    i = ds_st_header_find(&f->h, "c");
    ds_st_view(f, i, &data, &owned);
    ck_assert_ptr_null(owned);
    ck_assert_int_eq(*(const uint8_t *)data, 7);
    ds_st_release(f, i);
    ck_assert_int_eq(*(const uint8_t *)data, 7); /* released pages come back from the file */
    ds_st_close(f);
    /* An unwritable path is an output error. */
    ck_assert_int_eq(ds_st_writer_open("/nonexistent/dir/x.safetensors", 1, 3, t, 0, NULL, NULL, &w0),
                     DS_EXIT_OUTPUT);
}
END_TEST

START_TEST(test_unaligned_view)
{
    /* A 3-byte-longer header than needed: data starts at an odd offset. */
    size_t size;
    unsigned char *img = mk("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} ", 8, &size);
    float v[2] = {1.25f, -7};
    memcpy(img + size - 8, v, 8);
    write_file(tpath("u.safetensors"), img, size);
    free(img);
    ds_st_file *f;
    ck_assert_int_eq(ds_st_open(tpath("u.safetensors"), &f), 0);
    ck_assert_int_ne(f->h.data_start % 4, 0);
    const void *data;
    void *owned;
    ds_st_view(f, 0, &data, &owned);
    ck_assert_ptr_nonnull(owned);
    ck_assert_uint_eq((uintptr_t)data % 4, 0);
    ck_assert(((const float *)data)[0] == 1.25f && ((const float *)data)[1] == -7);
    free(owned);
    ds_st_close(f);
}
END_TEST

static void write_st(const char *path, int n, const ds_tinfo *t)
{
    ds_st_writer *w;
    ck_assert_int_eq(ds_st_writer_open(path, 1, n, t, 0, NULL, NULL, &w), 0);
    ck_assert_int_eq(ds_st_writer_close(w), 0);
}

START_TEST(test_shard_set)
{
    ds_tinfo t1[2] = {{.name = "x", .dtype = DS_DTYPE_F32, .ndim = 1, .shape = {4}},
                      {.name = "z", .dtype = DS_DTYPE_F16, .ndim = 1, .shape = {2}}};
    ds_tinfo t2[1] = {{.name = "y", .dtype = DS_DTYPE_BF16, .ndim = 1, .shape = {8}}};
    write_st(tpath("m-1.safetensors"), 2, t1);
    write_st(tpath("m-2.safetensors"), 1, t2);
    const char *idx = "{\"metadata\":{\"total_size\":28},\"weight_map\":{\"x\":\"m-1.safetensors\","
                      "\"y\":\"m-2.safetensors\",\"z\":\"m-1.safetensors\"}}";
    write_file(tpath("m.index.json"), idx, strlen(idx));
    ds_st_set *s;
    char *args[2] = {tpath("m.index.json")};
    ck_assert_int_eq(ds_st_set_open(1, args, &s), 0);
    ck_assert_int_eq(s->n_files, 2);
    ck_assert_int_eq(s->n, 3);
    ck_assert_str_eq(s->info[1].name, "y");
    ck_assert_int_eq(s->info[1].dtype, DS_DTYPE_BF16);
    int y = ds_st_set_find(s, "y");
    ck_assert_str_eq(s->files[s->file_of[y]]->h.tensors[s->index_in[y]].info.name, "y");
    ck_assert_int_eq(ds_st_set_find(s, "w"), -1);
    ds_st_set_close(s);
    /* The shard list works without the index. */
    args[0] = tpath("m-2.safetensors");
    args[1] = tpath("m-1.safetensors");
    ck_assert_int_eq(ds_st_set_open(2, args, &s), 0);
    ck_assert_int_eq(s->n, 3);
    ds_st_set_close(s);
    /* The same tensor in two files. */
    args[1] = tpath("m-2.safetensors");
    ck_assert_int_eq(ds_st_set_open(2, args, &s), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "tensor y: also in"));
    /* An index that lies about where a tensor is, or misses one. */
    const char *lie = "{\"weight_map\":{\"x\":\"m-2.safetensors\",\"y\":\"m-2.safetensors\",\"z\":\"m-1.safetensors\"}}";
    write_file(tpath("m.index.json"), lie, strlen(lie));
    args[0] = tpath("m.index.json");
    ck_assert_int_eq(ds_st_set_open(1, args, &s), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "tensor x: index says m-2.safetensors"));
    const char *miss = "{\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-2.safetensors\"}}";
    write_file(tpath("m.index.json"), miss, strlen(miss));
    ck_assert_int_eq(ds_st_set_open(1, args, &s), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "tensor z: in the shard but not in the index"));
}
END_TEST

START_TEST(test_hf_config)
{
    ds_config c = {.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .vocab_size = 512,
                   .max_seq_len = 512, .norm_eps = 1e-5f, .rope_theta = 10000, .tied_embeddings = 1};
    char *js = ds_hf_config_json(&c, DS_DTYPE_BF16);
    ck_assert_ptr_nonnull(strstr(js, "\"rms_norm_eps\": 1e-05,"));
    ck_assert_ptr_nonnull(strstr(js, "\"rope_theta\": 10000.0,"));
    ck_assert_ptr_nonnull(strstr(js, "\"torch_dtype\": \"bfloat16\""));
    write_file(tpath("config.json"), js, strlen(js));
    free(js);
    ds_config d;
    ck_assert_int_eq(ds_hf_config_load(tpath("config.json"), &d), 0);
    ck_assert(memcmp(&c, &d, sizeof c) == 0);
    /* Hugging Face's LlamaConfig defaults for the optional keys. */
    const char *min = "{\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":2,\"vocab_size\":10}";
    write_file(tpath("config.json"), min, strlen(min));
    ck_assert_int_eq(ds_hf_config_load(tpath("config.json"), &d), 0);
    ck_assert_int_eq(d.n_kv_heads, 2);
    ck_assert_int_eq(d.max_seq_len, 2048);
    ck_assert_float_eq(d.norm_eps, 1e-6f);
    ck_assert_float_eq(d.rope_theta, 10000.0f);
    ck_assert_int_eq(d.tied_embeddings, 0);
    const char *gpt = "{\"model_type\":\"gpt2\",\"hidden_size\":8}";
    write_file(tpath("config.json"), gpt, strlen(gpt));
    ck_assert_int_eq(ds_hf_config_load(tpath("config.json"), &d), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "model_type 'gpt2'"));
    const char *nolayers = "{\"hidden_size\":8,\"intermediate_size\":16,\"num_attention_heads\":2,\"vocab_size\":10}";
    write_file(tpath("config.json"), nolayers, strlen(nolayers));
    ck_assert_int_eq(ds_hf_config_load(tpath("config.json"), &d), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "missing num_hidden_layers"));
    ck_assert_int_eq(ds_hf_config_load(tpath("none.json"), &d), DS_EXIT_INPUT);
}
END_TEST

/* ---- llama2.c */

/* A llama2.c file whose every float is its own index in the weight area. */
static void write_l2c(const char *path, const int32_t h[7], int64_t extra_bytes)
{
    ds_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                   .vocab_size = abs(h[5]), .max_seq_len = h[6], .tied_embeddings = h[5] > 0};
    int64_t n = ((int64_t)ds_llama2c_file_size(&c) - 28) / 4;
    size_t size = (size_t)(28 + 4 * n + extra_bytes);
    unsigned char *b = calloc(1, size > 28 ? size : 28);
    memcpy(b, h, 28);
    for (int64_t i = 0; i < n && 28 + 4 * i + 4 <= (int64_t)size; i++) {
        float v = (float)i;
        memcpy(b + 28 + 4 * i, &v, 4);
    }
    write_file(path, b, size);
    free(b);
}

START_TEST(test_llama2c_layout)
{
    /* dim 8, hidden 6, 2 layers, 2 heads (hs 4), 1 kv head, vocab 5 unshared, seq 3 */
    const int32_t h[7] = {8, 6, 2, 2, 1, -5, 3};
    const int64_t D = 8, H = 6, L = 2, V = 5, S = 3, hs = 4, kv = 4;
    write_l2c(tpath("m.bin"), h, 0);
    ds_llama2c *f;
    ck_assert_int_eq(ds_llama2c_open(tpath("m.bin"), &f), 0);
    const ds_config *c = ds_llama2c_config(f);
    ck_assert_int_eq(c->vocab_size, 5);
    ck_assert_int_eq(c->tied_embeddings, 0);
    ck_assert_int_eq(c->max_seq_len, 3);
    ck_assert_float_eq(c->norm_eps, 1e-5f);
    ck_assert_float_eq(c->rope_theta, 10000.0f);
    /* Start of each array, written out from the format description. */
    int64_t emb = 0, rms_att = emb + V * D, wq = rms_att + L * D, wk = wq + L * D * D, wv = wk + L * kv * D;
    int64_t wo = wv + L * kv * D, rms_ffn = wo + L * D * D, w1 = rms_ffn + L * D, w2 = w1 + L * H * D;
    int64_t w3 = w2 + L * D * H, rms_final = w3 + L * H * D, wcls = rms_final + D + 2 * S * hs / 2;
    float buf[64 * 8];
    struct { const char *name; int64_t base, rows, cols, heads; } cases[] = {
        {"model.embed_tokens.weight", emb, V, D, 0},
        {"model.layers.1.input_layernorm.weight", rms_att + D, 1, D, 0},
        {"model.layers.1.self_attn.q_proj.weight", wq + D * D, D, D, 2},
        {"model.layers.0.self_attn.k_proj.weight", wk, kv, D, 1},
        {"model.layers.1.self_attn.k_proj.weight", wk + kv * D, kv, D, 1},
        {"model.layers.1.self_attn.v_proj.weight", wv + kv * D, kv, D, 0},
        {"model.layers.0.self_attn.o_proj.weight", wo, D, D, 0},
        {"model.layers.1.post_attention_layernorm.weight", rms_ffn + D, 1, D, 0},
        {"model.layers.1.mlp.gate_proj.weight", w1 + H * D, H, D, 0},
        {"model.layers.1.mlp.down_proj.weight", w2 + D * H, D, H, 0},
        {"model.layers.0.mlp.up_proj.weight", w3, H, D, 0},
        {"model.norm.weight", rms_final, 1, D, 0},
        {"lm_head.weight", wcls, V, D, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ck_assert_int_eq(ds_llama2c_read(f, cases[k].name, buf), 0);
        for (int64_t r = 0; r < cases[k].rows; r++) {
            int64_t src = r;
            if (cases[k].heads) { /* rotate-half row r of head r/hs came from interleaved row 2i or 2i+1 */
                int64_t i = r % hs, head = r / hs;
                src = head * hs + (i < hs / 2 ? 2 * i : 2 * (i - hs / 2) + 1);
            }
            for (int64_t j = 0; j < cases[k].cols; j++)
                ck_assert_msg(buf[r * cases[k].cols + j] == (float)(cases[k].base + src * cases[k].cols + j),
                              "%s [%lld,%lld]", cases[k].name, (long long)r, (long long)j);
        }
    }
    ck_assert_int_eq(ds_llama2c_read(f, "model.layers.2.mlp.up_proj.weight", buf), DS_EXIT_INPUT);
    ck_assert_int_eq(ds_llama2c_read(f, "model.layers.01.mlp.up_proj.weight", buf), DS_EXIT_INPUT);
    ck_assert_int_eq(ds_llama2c_read(f, "model.layers.0.mlp.upproj.weight", buf), DS_EXIT_INPUT);
    ds_llama2c_close(f);
}
END_TEST

START_TEST(test_llama2c_bad)
{
    const int32_t h[7] = {8, 6, 2, 2, 1, 5, 3};
    ds_llama2c *f;
    write_l2c(tpath("t.bin"), h, -4);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "truncated"));
    write_l2c(tpath("t.bin"), h, 3);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "trailing data"));
    write_l2c(tpath("t.bin"), h, 0);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), 0);
    ck_assert_int_eq(ds_llama2c_config(f)->tied_embeddings, 1);
    ck_assert_int_eq(ds_llama2c_read(f, "lm_head.weight", (float[40]){0}), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "tensor lm_head.weight"));
    ds_llama2c_close(f);
    const int32_t v1[7] = {0x616b3432, 1, 0, 0, 0, 0, 0};
    write_file(tpath("t.bin"), v1, 28);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "versioned llama2.c export"));
    const int32_t odd[7] = {8, 6, 2, 3, 1, 5, 3}; /* 8 is not a multiple of 3 heads */
    write_file(tpath("t.bin"), odd, 28);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "heads"));
    const int32_t huge[7] = {1 << 24, 1 << 24, 4096, 1 << 12, 1 << 12, INT32_MIN, 1 << 24};
    write_file(tpath("t.bin"), huge, 28);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    write_file(tpath("t.bin"), h, 20);
    ck_assert_int_eq(ds_llama2c_open(tpath("t.bin"), &f), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "less than the 28-byte"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    /* Every case gets a fresh temporary folder per test. */
    TCase *layout = ds_check_case(s, "layout", 0);
    tcase_add_test(layout, test_layout_known_header);
    tcase_add_test(layout, test_layout_escapes_names);
    TCase *bad = ds_check_case(s, "bad-input", 0);
    tcase_add_test(bad, test_bad_headers);
    tcase_add_test(bad, test_bad_lengths);
    tcase_add_test(bad, test_bad_corpus);
    TCase *io = ds_check_case(s, "write-read", 0);
    tcase_add_test(io, test_write_read);
    tcase_add_test(io, test_unaligned_view);
    TCase *shards = ds_check_case(s, "shards", 0);
    tcase_add_test(shards, test_shard_set);
    TCase *hf = ds_check_case(s, "hf-config", 0);
    tcase_add_test(hf, test_hf_config);
    TCase *tl = ds_check_case(s, "llama2c", 0);
    tcase_add_test(tl, test_llama2c_layout);
    tcase_add_test(tl, test_llama2c_bad);
    TCase *all[] = {layout, bad, io, shards, hf, tl};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tcase_add_checked_fixture(all[i], setup, teardown);
    return ds_check_run(s);
}
