/* Hugging Face tokenizer.json encode speed, one core: load a tokenizer.json
 * (timed apart), then encode every line of TEXT (each line with its newline,
 * as one document: the same documents as bench/tokenizer_npm.js) with the
 * post-processor's special tokens, as `deltasoup tokenize` does. Best of
 * --reps passes over the whole text; the tokenizer is loaded once, so its
 * word cache is warm from the second pass on (--reps 1: a cold cache).
 * Output: "key value" lines for bench/tokenizer.sh. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_tokenizer.h"
#include "src/ds.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0, k;
    char *s = ds_malloc(cap);
    while ((k = fread(s + n, 1, cap - n, f)) > 0)
        if ((n += k) == cap) s = ds_realloc(s, cap *= 2);
    fclose(f);
    *len = n;
    return s;
}

int main(int argc, char **argv)
{
    const char *tok_path = NULL, *name = "tok";
    long reps = 3;
    static const struct option opts[] = {{"tokenizer", 1, 0, 't'}, {"name", 1, 0, 'N'}, {"reps", 1, 0, 'n'},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        if (o == 't') tok_path = optarg;
        else if (o == 'N') name = optarg;
        else if (o == 'n') rc = ds_parse_int("--reps", optarg, 1, 1000, &reps);
        else if (o == 'h') {
            printf("usage: tokenizer_bench --tokenizer tokenizer.json [--name NAME] [--reps N] TEXT\n");
            return 0;
        } else
            return DS_EXIT_USAGE;
        if (rc) {
            fprintf(stderr, "tokenizer_bench: %s\n", ds_errmsg());
            return rc;
        }
    }
    if (!tok_path || optind != argc - 1) {
        fprintf(stderr, "tokenizer_bench: expected --tokenizer tokenizer.json and one TEXT file\n");
        return DS_EXIT_USAGE;
    }
    size_t len;
    char *text = read_file(argv[optind], &len);
    if (!text) {
        fprintf(stderr, "tokenizer_bench: cannot read %s\n", argv[optind]);
        return DS_EXIT_INPUT;
    }
    double t0 = ds_now();
    ds_tok_hf *t;
    int rc = ds_tok_hf_load(tok_path, &t);
    if (rc) {
        fprintf(stderr, "tokenizer_bench: %s\n", ds_errmsg());
        return rc;
    }
    double load = ds_now() - t0, best = 1e30, first = 0;
    size_t tokens = 0;
    for (long r = 0; r < reps; r++) {
        size_t total = 0;
        t0 = ds_now();
        for (size_t at = 0; at < len;) {
            const char *nl = memchr(text + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - text) + 1 : len;
            int32_t *ids;
            size_t n;
            if ((rc = ds_tok_hf_encode(t, text + at, end - at, 1, &ids, &n)) != 0) {
                fprintf(stderr, "tokenizer_bench: %s\n", ds_errmsg());
                return rc;
            }
            total += n;
            free(ids);
            at = end;
        }
        double s = ds_now() - t0;
        if (r == 0) first = s;
        if (s < best) best = s;
        tokens = total;
    }
    printf("%s_bytes %zu\n%s_load_s %.3f\n%s_tokens %zu\n", name, len, name, load, name, tokens);
    printf("%s_first_mbps %.3f\n%s_mbps %.3f\n", name, (double)len / 1e6 / first, name, (double)len / 1e6 / best);
    ds_tok_hf_free(t);
    free(text);
    return 0;
}
