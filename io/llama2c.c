/* llama2.c legacy checkpoints read as Hugging Face Llama tensors. */
#include "config.h"
#include "io/llama2c.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The arrays of the file in order; offsets in floats after the header. */
enum { A_EMB, A_RMS_ATT, A_WQ, A_WK, A_WV, A_WO, A_RMS_FFN, A_W1, A_W2, A_W3, A_RMS_FINAL, A_FREQ_RE, A_FREQ_IM,
       A_WCLS, A_COUNT };

struct ds_llama2c {
    char *path;
    int fd;
    ds_config cfg;
    int64_t off[A_COUNT + 1]; /* off[A_COUNT]: end */
};

/* Element counts of each array; 0 on overflow. */
static int layout(const ds_config *c, int64_t off[A_COUNT + 1])
{
    int64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size, S = c->max_seq_len;
    int64_t kv = D / c->n_heads * c->n_kv_heads, hs = D / c->n_heads;
    int64_t n[A_COUNT] = {V * D, L * D, L * D * D, L * kv * D, L * kv * D, L * D * D, L * D,
                          L * H * D, L * D * H, L * H * D, D, S * hs / 2, S * hs / 2,
                          c->tied_embeddings ? 0 : V * D};
    off[0] = 0;
    for (int i = 0; i < A_COUNT; i++)
        if (__builtin_add_overflow(off[i], n[i], &off[i + 1]) || off[i + 1] > INT64_MAX / 8) return -1;
    return 0;
}

uint64_t ds_llama2c_file_size(const ds_config *cfg)
{
    int64_t off[A_COUNT + 1];
    if (layout(cfg, off) != 0) return 0;
    return DS_LLAMA2C_HEADER_BYTES + 4 * (uint64_t)off[A_COUNT];
}

int ds_llama2c_open(const char *path, ds_llama2c **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds_err(DS_EXIT_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    unsigned char hb[DS_LLAMA2C_HEADER_BYTES];
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) rc = ds_err(DS_EXIT_INPUT, "%s: not a regular file", path);
    else if (st.st_size < DS_LLAMA2C_HEADER_BYTES || ds_pread_all(fd, hb, sizeof hb, 0) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: truncated: %lld bytes, less than the %d-byte llama2.c header", path,
                    (long long)st.st_size, DS_LLAMA2C_HEADER_BYTES);
    if (rc) {
        close(fd);
        return rc;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)((uint32_t)hb[4 * i] | (uint32_t)hb[4 * i + 1] << 8 | (uint32_t)hb[4 * i + 2] << 16 |
                         (uint32_t)hb[4 * i + 3] << 24);
    ds_llama2c *f = ds_calloc(1, sizeof *f);
    f->path = ds_strdup(path);
    f->fd = fd;
    ds_config *c = &f->cfg;
    *c = (ds_config){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                     .vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]),
                     .max_seq_len = h[6], .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                     .tied_embeddings = h[5] > 0};
    if ((uint32_t)h[0] == DS_LLAMA2C_MAGIC)
        rc = ds_err(DS_EXIT_INPUT, "%s: magic 'ak42' of a versioned llama2.c export (version %d): only the legacy "
                    "format (export.py --version 0) is supported", path, h[1]);
    else if ((rc = ds_config_check(c, path)) != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ds_errmsg());
        ds_err(rc, "%s (not a llama2.c legacy checkpoint?)", msg);
    }
    else if (layout(c, f->off) != 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: header sizes overflow (not a llama2.c checkpoint?)", path);
    else {
        uint64_t want = ds_llama2c_file_size(c), have = (uint64_t)st.st_size;
        if (have != want)
            rc = ds_err(DS_EXIT_INPUT, "%s: %llu bytes, but the header (dim=%d hidden_dim=%d n_layers=%d n_heads=%d "
                        "n_kv_heads=%d vocab_size=%d seq_len=%d) implies %llu: %s", path,
                        (unsigned long long)have, h[0], h[1], h[2], h[3], h[4], h[5], h[6], (unsigned long long)want,
                        have < want ? "truncated" : "trailing data");
    }
    if (rc) {
        ds_llama2c_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

const ds_config *ds_llama2c_config(const ds_llama2c *f) { return &f->cfg; }

static const struct {
    const char *suffix;
    int array;
    int permute; /* 1: q (n_heads), 2: k (n_kv_heads) */
} layer_tab[] = {
    {"input_layernorm.weight", A_RMS_ATT, 0},  {"self_attn.q_proj.weight", A_WQ, 1},
    {"self_attn.k_proj.weight", A_WK, 2},      {"self_attn.v_proj.weight", A_WV, 0},
    {"self_attn.o_proj.weight", A_WO, 0},      {"post_attention_layernorm.weight", A_RMS_FFN, 0},
    {"mlp.gate_proj.weight", A_W1, 0},         {"mlp.down_proj.weight", A_W2, 0},
    {"mlp.up_proj.weight", A_W3, 0},
};

/* Rows of one head: HF row i (i < hs/2) = row 2i, HF row hs/2 + i = row 2i+1. */
static void rope_unpermute(float *w, int64_t n_heads, int64_t hs, int64_t cols, float *tmp)
{
    size_t rowb = (size_t)cols * sizeof(float);
    for (int64_t h = 0; h < n_heads; h++) {
        float *head = w + h * hs * cols;
        memcpy(tmp, head, (size_t)hs * rowb);
        for (int64_t i = 0; i < hs / 2; i++) {
            memcpy(head + i * cols, tmp + (2 * i) * cols, rowb);
            memcpy(head + (hs / 2 + i) * cols, tmp + (2 * i + 1) * cols, rowb);
        }
    }
}

int ds_llama2c_read(ds_llama2c *f, const char *name, float *dst)
{
    const ds_config *c = &f->cfg;
    int array = -1, layer = 0, permute = 0;
    int64_t per_layer = 0;
    if (strcmp(name, "model.embed_tokens.weight") == 0) array = A_EMB;
    else if (strcmp(name, "model.norm.weight") == 0) array = A_RMS_FINAL;
    else if (strcmp(name, "lm_head.weight") == 0) {
        if (c->tied_embeddings)
            return ds_err(DS_EXIT_INPUT, "%s: tensor lm_head.weight: not in the file (the classifier is shared "
                          "with the token embedding)", f->path);
        array = A_WCLS;
    } else if (strncmp(name, "model.layers.", 13) == 0) {
        char *end;
        long l = strtol(name + 13, &end, 10);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "model.layers.%ld.", l);
        if (l >= 0 && l < c->n_layers && strncmp(name, prefix, strlen(prefix)) == 0)
            for (size_t i = 0; i < sizeof layer_tab / sizeof layer_tab[0]; i++)
                if (strcmp(name + strlen(prefix), layer_tab[i].suffix) == 0) {
                    array = layer_tab[i].array;
                    permute = layer_tab[i].permute;
                    layer = (int)l;
                    per_layer = (f->off[array + 1] - f->off[array]) / c->n_layers;
                }
    }
    if (array < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s: no such tensor in a llama2.c checkpoint", f->path, name);
    int64_t first = f->off[array] + (int64_t)layer * per_layer;
    int64_t count = per_layer ? per_layer : f->off[array + 1] - f->off[array];
    if (ds_pread_all(f->fd, dst, (size_t)count * 4, DS_LLAMA2C_HEADER_BYTES + 4 * (uint64_t)first) != 0)
        return ds_err(DS_EXIT_INPUT, "%s: tensor %s: read failed: %s", f->path, name,
                      errno ? strerror(errno) : "file shrank");
    if (permute) {
        int64_t hs = c->dim / c->n_heads, nh = permute == 1 ? c->n_heads : c->n_kv_heads;
        float *tmp = ds_malloc((size_t)(hs * c->dim) * sizeof(float));
        rope_unpermute(dst, nh, hs, c->dim, tmp);
        free(tmp);
    }
    return 0;
}

void ds_llama2c_close(ds_llama2c *f)
{
    if (!f) return;
    close(f->fd);
    free(f->path);
    free(f);
}
