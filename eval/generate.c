/* Text generation with the KV-cached engine (eval/generate.h). */
#include "config.h"
#include "eval/generate.h"
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include "io/tokenizer.h"

int ds_generate_pick(float *z, int V, float temp, ds_rng *rng)
{
    int best = 0;
    for (int j = 1; j < V; j++) best = z[j] > z[best] ? j : best;
    if (temp == 0) return best;
    const float mx = z[best];
    double sum = 0;
    for (int j = 0; j < V; j++) sum += (z[j] = expf((z[j] - mx) / temp));
    double u = ds_rng_uniform(rng) * sum, c = 0;
    for (int j = 0; j < V; j++)
        if ((c += z[j]) > u) return j;
    return best; /* u landed on the rounding slack at the end */
}

static int is_stop(int id, const int *stop, int n_stop)
{
    for (int i = 0; i < n_stop; i++)
        if (id == stop[i]) return 1;
    return 0;
}

int ds_generate(const ds_llama *m, const int *ids, int np, int total, float temp, uint64_t seed, const int *stop,
                int n_stop, ds_generate_fn on_token, void *arg, int *out)
{
    ds_llama_kv kv;
    ds_llama_kv_init(&kv, m, total);
    ds_rng rng = {seed};
    int n = 0, prev = ids[np - 1];
    float *z = NULL;
    for (int pos = 0; pos < np; pos++) z = ds_llama_step(m, &kv, ids[pos], pos);
    for (int pos = np; pos < total; pos++) {
        if (ds_find_nonfinite(DS_DTYPE_F32, z, (size_t)m->cfg.vocab_size) >= 0) {
            n = -1 - n; /* a NaN would pick token 0 */
            break;
        }
        int next = ds_generate_pick(z, m->cfg.vocab_size, temp, &rng);
        if (is_stop(next, stop, n_stop)) break;
        out[n++] = next;
        if (on_token) on_token(arg, prev, next);
        prev = next;
        if (pos + 1 < total) z = ds_llama_step(m, &kv, next, pos);
    }
    ds_llama_kv_free(&kv);
    return n;
}

float *ds_generate_step(const ds_pipe *p, const ds_llama *m, ds_llama_kv *kv, int token, int pos, float *x)
{
    if (!p) return ds_llama_step(m, kv, token, pos);
    const int D = m->cfg.dim;
    if (!p->first) MPI_Recv(x, D, MPI_FLOAT, p->stage - 1, 0, p->group_comm, MPI_STATUS_IGNORE);
    float *h = ds_llama_step_stage(m, kv, token, p->first ? NULL : x, pos);
    if (p->last) return h;
    MPI_Send(h, D, MPI_FLOAT, p->stage + 1, 0, p->group_comm);
    return NULL;
}

int ds_generate_pipe(const ds_pipe *p, const ds_llama *m, const int *ids, int np, int total, float temp,
                     uint64_t seed, const int *stop, int n_stop, ds_generate_fn on_token, void *arg, int *out)
{
    const int D = m->cfg.dim, V = m->cfg.vocab_size;
    ds_llama_kv kv;
    ds_llama_kv_init(&kv, m, total);
    ds_rng rng = {seed};
    float *x = ds_malloc(sizeof(float) * (size_t)D);
    int n = 0, prev = ids[np - 1], cur = ids[0];
    /* position pos is fed through the stages; from the prompt's last one
     * on, the last stage picks the token of position pos + 1 and tells the
     * group (-1: a stop token, -2: non-finite logits) */
    for (int pos = 0; pos + 1 < total; pos++) {
        float *h = ds_generate_step(p, m, &kv, cur, pos, x);
        if (pos + 1 < np) {
            cur = ids[pos + 1];
            continue;
        }
        int next = 0;
        if (p->last) {
            if (ds_find_nonfinite(DS_DTYPE_F32, h, (size_t)V) >= 0) next = -2;
            else if (is_stop(next = ds_generate_pick(h, V, temp, &rng), stop, n_stop)) next = -1;
        }
        MPI_Bcast(&next, 1, MPI_INT, p->P - 1, p->group_comm);
        if (next == -2) {
            n = -1 - n;
            break;
        }
        if (next == -1) break;
        out[n++] = next;
        if (on_token) on_token(arg, prev, next);
        prev = cur = next;
    }
    free(x);
    ds_llama_kv_free(&kv);
    return n;
}

/* ---- streaming text */

/* Bytes of text[0..len) that can be written now: without trailing spaces
 * and without a trailing U+FFFD (EF BF BD). */
static size_t settled(const char *text, size_t len)
{
    for (;;) {
        if (len >= 3 && memcmp(text + len - 3, "\xef\xbf\xbd", 3) == 0) len -= 3;
        else if (len > 0 && text[len - 1] == ' ') len--;
        else return len;
    }
}

static void stream_write(ds_text_stream *s, FILE *f, int all)
{
    size_t len;
    char *text = ds_tokenizer_decode_ids(s->tok, s->ids, s->n, &len);
    if (!text) return; /* ids come from the model or the tokenizer: in range */
    size_t upto = all ? len : settled(text, len);
    if (upto > s->written) {
        fwrite(text + s->written, 1, upto - s->written, f);
        fflush(f);
        s->written = upto;
    }
    free(text);
}

void ds_text_stream_init(ds_text_stream *s, ds_tokenizer *tok, const int *ids, int n, FILE *f)
{
    s->tok = tok;
    s->cap = n + 64;
    s->ids = ds_malloc((size_t)s->cap * sizeof *s->ids);
    memcpy(s->ids, ids, (size_t)n * sizeof *ids);
    s->n = n;
    s->written = 0;
    stream_write(s, f, 0);
}

void ds_text_stream_push(ds_text_stream *s, int id, FILE *f)
{
    if (s->n == s->cap) s->ids = ds_realloc(s->ids, (size_t)(s->cap *= 2) * sizeof *s->ids);
    s->ids[s->n++] = id;
    stream_write(s, f, 0);
}

void ds_text_stream_end(ds_text_stream *s, FILE *f)
{
    stream_write(s, f, 1);
    free(s->ids);
    s->ids = NULL;
}
