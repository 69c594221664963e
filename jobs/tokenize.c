/* deltasoup tokenize: what the model sees. Each JSON line of the input gives
 * one line on standard output, in input order: {"text"} -> {"ids"} (with
 * the post-processor's special tokens unless --no-special), {"ids"} ->
 * {"text"} with --decode (special tokens skipped), {"messages"} -> {"ids"}
 * of the rendered chat template with --chat. Rank 0 does the work; the
 * output is printed only when every line succeeded. */
#include "config.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/h5_model.h"
#include "io/tokenizer.h"
#include "src/chat.h"
#include "src/jobs.h"
#include "src/opts.h"

typedef struct {
    const char *model, *tokpath, *tmpl_opt;
    int no_special, decode, chat;
    ds_strlist in;
} opts;

static int check(void *p)
{
    const opts *o = p;
    if (!o->model == !o->tokpath) return ds_err(DS_EXIT_USAGE, "give one of --model M.h5 and --tokenizer FILE");
    if (o->decode && o->chat) return ds_err(DS_EXIT_USAGE, "--decode and --chat exclude each other");
    if (o->tmpl_opt && !o->chat) return ds_err(DS_EXIT_USAGE, "--chat-template is for --chat");
    if (o->decode && o->no_special) return ds_err(DS_EXIT_USAGE, "--no-special is for encoding (--decode always skips specials)");
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, model, "model", "M.h5", "the tokenizer stored in a checkpoint"),
    DS_OPT_STRING(opts, tokpath, "tokenizer", "FILE",
                  "a Hugging Face tokenizer.json (with the tokenizer_config.json beside it)\n"
                  "or a llama2.c tokenizer file"),
    DS_OPT_FLAG(opts, no_special, "no-special", "encode without the post-processor's special tokens (BOS)"),
    DS_OPT_FLAG(opts, decode, "decode", "lines {\"ids\": [...]} -> {\"text\": ...}, special tokens skipped"),
    DS_OPT_FLAG(opts, chat, "chat",
                "lines {\"messages\": [{\"role\", \"content\"}...]} -> {\"ids\": [...]}: the chat\n"
                "template with the generation prompt, encoded as apply_chat_template does"),
    DS_OPT_STRING(opts, tmpl_opt, "chat-template", "NAME",
                  "with --chat: auto (the model's recorded template, else none), llama3,\n"
                  "llama2, mistral, chatml or none (default auto)"),
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup tokenize (--model M.h5 | --tokenizer tokenizer.json) [--no-special] [--decode] [--chat] IN.jsonl",
    .about = "Encode or decode JSON lines with a model's tokenizer, one output line per input line.",
    .opts = options,
    .epilog = "Input lines: {\"text\": STRING}, or {\"ids\": [INT...]} with --decode, or\n"
              "{\"messages\": [{\"role\": system|user|assistant, \"content\": STRING}...]} with --chat.\n"
              "exit: 0 ok, 2 usage, 3 bad input (the message names the file and line; nothing is printed)",
    .pos_off = offsetof(opts, in),
    .pos_min = 1,
    .pos_max = 1,
    .pos_name = "IN.jsonl",
    .check = check};

typedef struct {
    char *s;
    size_t n, cap;
} outbuf;

static void out_put(outbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->s = ds_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
}

static void out_ids(outbuf *b, const int *ids, int n)
{
    char num[16];
    out_put(b, "{\"ids\":[", 8);
    for (int i = 0; i < n; i++) out_put(b, num, (size_t)snprintf(num, sizeof num, i ? ",%d" : "%d", ids[i]));
    out_put(b, "]}\n", 3);
}

/* TEXT as a JSON line {"text": ...}; bytes that are not UTF-8 (a llama2.c
 * byte piece alone) become U+FFFD. */
static void out_text(outbuf *b, const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    if (!s) {
        char *fixed = ds_malloc(3 * len + 1);
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            json_t *one = NULL;
            size_t w = 1;
            for (; w <= 4 && i + w <= len && !(one = json_stringn(text + i, w)); w++) {}
            if (one) {
                memcpy(fixed + k, text + i, w);
                k += w;
                i += w - 1;
                json_decref(one);
            } else {
                memcpy(fixed + k, "\xef\xbf\xbd", 3);
                k += 3;
            }
        }
        s = json_stringn(fixed, k);
        free(fixed);
    }
    json_t *o = json_pack("{s:o}", "text", s);
    char *d = json_dumps(o, JSON_COMPACT);
    out_put(b, d, strlen(d));
    out_put(b, "\n", 1);
    free(d);
    json_decref(o);
}

typedef struct {
    const opts *o;
    ds_tokenizer *tok;
    const char *tmpl, *path;
    long line;
} job;

static int line_err(const job *j, const char *what)
{
    return ds_err(DS_EXIT_INPUT, "%s:%ld: %s", j->path, j->line, what);
}

static int do_encode(const job *j, json_t *rec, outbuf *b)
{
    json_t *t = json_object_get(rec, "text");
    if (!json_is_string(t)) return line_err(j, "expected {\"text\": STRING}");
    const char *text = json_string_value(t);
    int *ids = ds_malloc((strlen(text) + 3) * sizeof *ids);
    int n = ds_tokenizer_encode(j->tok, text, !j->o->no_special, 0, ids);
    if (n >= 0) out_ids(b, ids, n);
    free(ids);
    if (n < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ds_errmsg());
        return line_err(j, msg);
    }
    return 0;
}

static int do_decode(const job *j, json_t *rec, outbuf *b)
{
    json_t *a = json_object_get(rec, "ids");
    if (!json_is_array(a)) return line_err(j, "expected {\"ids\": [INT...]}");
    size_t n = json_array_size(a);
    int *ids = ds_malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (!json_is_integer(v) || id < 0 || id >= j->tok->vocab_size) {
            free(ids);
            char msg[160];
            if (json_is_integer(v))
                snprintf(msg, sizeof msg, "ids[%zu]: %lld is out of range 0..%d", i, (long long)id, j->tok->vocab_size - 1);
            else snprintf(msg, sizeof msg, "ids[%zu] is not an integer", i);
            return line_err(j, msg);
        }
        ids[i] = (int)id;
    }
    size_t len;
    char *text = ds_tokenizer_decode_ids(j->tok, ids, (int)n, &len);
    free(ids);
    if (!text) return line_err(j, ds_errmsg());
    out_text(b, text, len);
    free(text);
    return 0;
}

static int do_chat(const job *j, json_t *rec, outbuf *b)
{
    json_t *a = json_object_get(rec, "messages");
    if (!json_is_array(a)) return line_err(j, "expected {\"messages\": [{\"role\": ..., \"content\": ...}...]}");
    size_t n = json_array_size(a);
    ds_chat_msg *m = ds_calloc(n + 1, sizeof *m);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *r = json_object_get(e, "role"), *c = json_object_get(e, "content");
        if (!json_is_string(r) || !json_is_string(c)) {
            free(m);
            char msg[120];
            snprintf(msg, sizeof msg, "messages[%zu]: expected {\"role\": STRING, \"content\": STRING}", i);
            return line_err(j, msg);
        }
        m[i] = (ds_chat_msg){json_string_value(r), json_string_value(c)};
    }
    int *ids, k;
    int rc = ds_tokenizer_encode_chat(j->tok, j->tmpl, m, (int)n, !j->o->no_special, &ids, &k);
    free(m);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ds_errmsg());
        return line_err(j, msg);
    }
    out_ids(b, ids, k);
    free(ids);
    return 0;
}

static int do_line(const job *j, const char *line, size_t len, outbuf *b)
{
    json_error_t je;
    json_t *rec = json_loadb(line, len, 0, &je);
    if (!rec) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", strstr(je.text, "decode byte") ? "invalid UTF-8" : je.text);
        return line_err(j, msg);
    }
    int rc = !json_is_object(rec) ? line_err(j, "not a JSON object")
             : j->o->decode     ? do_decode(j, rec, b)
             : j->o->chat       ? do_chat(j, rec, b)
                                : do_encode(j, rec, b);
    json_decref(rec);
    return rc;
}

static int run(const opts *o, ds_tokenizer *tok)
{
    job j = {o, tok, NULL, o->in.v[0], 0};
    int rc = o->chat ? ds_tokenizer_chat_template(tok, o->tmpl_opt, "--chat-template", &j.tmpl) : 0;
    if (rc) return rc;
    if (o->chat && !o->tmpl_opt && tok->chat_template_other)
        fprintf(stderr, "deltasoup tokenize: warning: the tokenizer's chat template is none of the built-ins (%s): "
                        "none is used; --chat-template NAME chooses one\n", ds_chat_names());
    FILE *f = fopen(j.path, "rb");
    if (!f) return ds_err(DS_EXIT_INPUT, "%s: cannot open: %s", j.path, strerror(errno));
    outbuf b = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        j.line++;
        rc = do_line(&j, line, (size_t)len, &b);
    }
    if (!rc && ferror(f)) rc = ds_err(DS_EXIT_INPUT, "%s: read error", j.path);
    fclose(f);
    free(line);
    if (!rc && b.n && (fwrite(b.s, 1, b.n, stdout) != b.n || fflush(stdout) != 0))
        rc = ds_err(DS_EXIT_OUTPUT, "standard output: write error");
    free(b.s);
    return rc;
}

static int load_tokenizer(const opts *o, ds_tokenizer *tok)
{
    if (o->tokpath) return ds_tokenizer_load(o->tokpath, 0, tok);
    ds_model_file *f;
    int rc = ds_model_open(o->model, MPI_COMM_SELF, &f);
    if (rc) return rc;
    rc = ds_model_read_tokenizer(f, tok);
    ds_model_close(f);
    return rc;
}

int ds_job_tokenize(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    if (ctx->rank == 0) {
        ds_tokenizer tok = {0};
        rc = load_tokenizer(&o, &tok);
        if (!rc) rc = run(&o, &tok);
        ds_tokenizer_free(&tok);
    }
    ds_opts_free(&cmd, &o);
    return ds_ctx_agree(ctx, rc);
}
