/* Unit tests of src/chat.c: every rendered text (and every rejection) of the
 * reference vectors tests/data/tokenizers/{llama3-128k,llama2-style-32k}-chat.jsonl
 * (tests/tokenizer/make_chat_vectors.js: @huggingface/jinja through
 * @lenml/tokenizers' apply_chat_template; tests/tokenizer/chat_jinja2.py
 * renders them again with Python's jinja2), the vectors' Jinja texts
 * recognised as their names, and cases the vectors cannot hold: where
 * @huggingface/jinja and transformers' jinja2 differ (llama2's empty system
 * message; Python's str.strip() set), unknown roles and template names.
 * Also io/tok_files' ds_tok_config_parse (the one reader of
 * tokenizer_config.json's chat_template). Reads under
 * $top_srcdir (default "."). */
#include "config.h"
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/tok_files.h"
#include "io/tokenizer.h"
#include "src/chat.h"
#include "src/ds.h"
#include "tests/unit/check_main.h"

static char top[4096];

static const char *bos_of(const char *tmpl) { return strcmp(tmpl, "llama3") == 0 ? "<|begin_of_text|>" : "<s>"; }
static const char *eos_of(const char *tmpl) { return strcmp(tmpl, "llama3") == 0 ? "<|end_of_text|>" : "</s>"; }

/* Check every line of one vectors file; returns the number of renders. */
static int check_file(const char *name)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/tests/data/tokenizers/%s", top, name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    int renders = 0, jinjas = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *r = json_loads(line, 0, &je);
        ck_assert_msg(r != NULL, "%s: %s", path, je.text);
        const char *tmpl = json_string_value(json_object_get(r, "template"));
        json_t *jinja = json_object_get(r, "jinja");
        if (jinja) {
            const char *got = ds_chat_recognize(json_string_value(jinja));
            ck_assert_msg(got && strcmp(got, tmpl) == 0, "%s: the %s Jinja text is recognised as %s", path, tmpl,
                          got ? got : "nothing");
            jinjas++;
            json_decref(r);
            continue;
        }
        json_t *msgs = json_object_get(r, "messages");
        int n = (int)json_array_size(msgs);
        ds_chat_msg *m = calloc((size_t)n, sizeof *m);
        for (int i = 0; i < n; i++) {
            m[i].role = json_string_value(json_object_get(json_array_get(msgs, (size_t)i), "role"));
            m[i].content = json_string_value(json_object_get(json_array_get(msgs, (size_t)i), "content"));
        }
        char *out = NULL;
        int gen = json_is_true(json_object_get(r, "add_generation_prompt"));
        int rc = ds_chat_render(tmpl, m, n, gen, bos_of(tmpl), eos_of(tmpl), &out);
        const char *lname = json_string_value(json_object_get(r, "name"));
        json_t *err = json_object_get(r, "error");
        if (err) {
            ck_assert_msg(rc == DS_EXIT_INPUT, "%s: %s %s (gen %d): rendered, the reference raises '%s'", path, tmpl,
                          lname, gen, json_string_value(err));
            ck_assert_msg(strstr(ds_errmsg(), json_string_value(err)) != NULL, "%s: %s %s: message '%s', not '%s'", path,
                          tmpl, lname, ds_errmsg(), json_string_value(err));
        } else {
            const char *want = json_string_value(json_object_get(r, "text"));
            ck_assert_msg(rc == 0, "%s: %s %s: %s", path, tmpl, lname, ds_errmsg());
            ck_assert_msg(strcmp(out, want) == 0, "%s: %s %s (gen %d): got '%s', want '%s'", path, tmpl, lname, gen,
                          out, want);
        }
        renders++;
        free(out);
        free(m);
        json_decref(r);
    }
    free(line);
    fclose(f);
    ck_assert_int_gt(jinjas, 0);
    ck_assert_int_gt(renders, 50);
    return renders;
}

START_TEST(test_vectors)
{
    check_file("llama3-128k-chat.jsonl");
    check_file("llama2-style-32k-chat.jsonl");
}
END_TEST

static char *render1(const char *tmpl, const char *role, const char *content, const char *role2,
                     const char *content2)
{
    ds_chat_msg m[2] = {{role, content}, {role2, content2}};
    char *out = NULL;
    int rc = ds_chat_render(tmpl, m, role2 ? 2 : 1, 1, bos_of(tmpl), eos_of(tmpl), &out);
    ck_assert_msg(rc == 0, "%s", ds_errmsg());
    return out;
}

/* Texts from Python's jinja2 (transformers' environment) where
 * @huggingface/jinja differs. */
START_TEST(test_jinja2_cases)
{
    char *s = render1("llama2", "system", "", "user", "Hi");
    ck_assert_str_eq(s, "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST]");
    free(s);
    /* str.strip(): U+001C..U+001F and U+0085 are whitespace, U+FEFF and U+200B are not */
    s = render1("llama3", "user", "\x1c\x1f\xc2\x85 x \xef\xbb\xbf", NULL, NULL);
    ck_assert_str_eq(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx \xef\xbb\xbf<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    s = render1("llama2", "user", "\xe2\x80\x8b y \xe3\x80\x80", NULL, NULL);
    ck_assert_str_eq(s, "<s>[INST] \xe2\x80\x8b y [/INST]");
    free(s);
    /* bytes that are not UTF-8 are kept (the tokenizer refuses them later) */
    s = render1("llama3", "user", " \xff\x80 ", NULL, NULL);
    ck_assert(strstr(s, "\n\n\xff\x80<|eot_id|>") != NULL);
    free(s);
    s = render1("none", "user", "Plain prompt", NULL, NULL);
    ck_assert_str_eq(s, "User: Plain prompt\nAssistant:");
    free(s);
    ds_chat_msg d[4] = {{"system", "Be brief."}, {"user", "q1"}, {"assistant", "a1"}, {"user", "q2"}};
    char *t = NULL;
    ck_assert_int_eq(ds_chat_render("none", d, 4, 1, "<s>", "</s>", &t), 0);
    ck_assert_str_eq(t, "Be brief.\nUser: q1\nAssistant: a1\nUser: q2\nAssistant:");
    free(t);
}
END_TEST

START_TEST(test_errors)
{
    ds_chat_msg m[2] = {{"user", "a"}, {"tool", "b"}};
    char *out = (char *)1;
    ck_assert_int_eq(ds_chat_render("llama3", m, 2, 1, "", "", &out), DS_EXIT_INPUT);
    ck_assert_ptr_null(out);
    ck_assert_str_eq(ds_errmsg(), "chat: message 2: unknown role 'tool' (expected system, user or assistant)");
    ck_assert_int_eq(ds_chat_render("chatml", m, 2, 1, "", "", &out), DS_EXIT_INPUT);
    ck_assert_int_eq(ds_chat_render("llama3", m, 0, 1, "", "", &out), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "chat: no messages");
    ck_assert_int_eq(ds_chat_render("vicuna", m, 1, 1, "", "", &out), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "chat template 'vicuna' is not one of llama3, llama2, mistral, chatml, none");
    ds_chat_msg two[2] = {{"user", "a"}, {"user", "b"}};
    ck_assert_int_eq(ds_chat_render("mistral", two, 2, 1, "<s>", "</s>", &out), DS_EXIT_INPUT);
    ck_assert_str_eq(ds_errmsg(), "chat template: message 2 (user): Conversation roles must alternate "
                                  "user/assistant/user/assistant/...");
    ds_chat_msg noc = {"user", NULL};
    ck_assert_int_eq(ds_chat_render("none", &noc, 1, 1, "", "", &out), DS_EXIT_INPUT);
}
END_TEST

/* What tokenizer_config.json C (taken over) holds as chat_template through
 * ds_tok_config_parse: a built-in's name, "(other)", "(none)" or "(error)". */
static const char *config_template(json_t *c)
{
    char *t = json_dumps(c, 0);
    json_decref(c);
    ds_tok_files tf = {.config = t, .config_len = strlen(t)};
    ds_tok_config cfg;
    static char out[32];
    if (ds_tok_config_parse("tokenizer_config.json", &tf, &cfg)) {
        snprintf(out, sizeof out, "(error)");
    } else {
        const char *name = cfg.chat_template ? ds_chat_recognize(cfg.chat_template) : NULL;
        snprintf(out, sizeof out, "%s", name ? name : cfg.chat_template ? "(other)" : "(none)");
        ds_tok_config_free(&cfg);
    }
    free(t);
    return out;
}

START_TEST(test_recognize)
{
    ck_assert_ptr_null(ds_chat_recognize(NULL));
    ck_assert_ptr_null(ds_chat_recognize(""));
    ck_assert_ptr_null(ds_chat_recognize("{{ messages }}"));
    for (const char *const *n = (const char *const[]){"llama3", "llama2", "mistral", "chatml", NULL}; *n; n++) {
        const char *j = ds_chat_jinja(*n);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(ds_chat_recognize(j), *n);
        char *padded = malloc(strlen(j) + 8);
        sprintf(padded, "\n  %s\n", j);
        ck_assert_str_eq(ds_chat_recognize(padded), *n);
        padded[strlen(padded) - 3] ^= 1; /* one byte changed */
        ck_assert_ptr_null(ds_chat_recognize(padded));
        free(padded);
        ck_assert(ds_chat_known(*n));
        ck_assert(ds_chat_encode_plain(*n));
    }
    ck_assert_ptr_null(ds_chat_jinja("none"));
    ck_assert(ds_chat_known("none"));
    ck_assert(!ds_chat_encode_plain("none"));
    ck_assert(!ds_chat_known("auto"));
    ck_assert(!ds_chat_known(NULL));
    /* tokenizer_config.json: a string, or the "default" entry of a list
     * (else the first), through the one parser import and inspect use */
    json_t *c = json_pack("{s:s, s:s}", "bos_token", "<s>", "chat_template", ds_chat_jinja("mistral"));
    ck_assert_str_eq(config_template(c), "mistral");
    c = json_pack("{s:[{s:s, s:s}, {s:s, s:s}]}", "chat_template", "name", "tool_use", "template", "x", "name",
                  "default", "template", ds_chat_jinja("chatml"));
    ck_assert_str_eq(config_template(c), "chatml");
    c = json_pack("{s:[{s:s, s:s}, {s:s, s:s}]}", "chat_template", "name", "a", "template", ds_chat_jinja("llama2"),
                  "name", "b", "template", "x");
    ck_assert_str_eq(config_template(c), "llama2");
    ck_assert_str_eq(config_template(json_pack("{s:s}", "chat_template", "{{ x }}")), "(other)");
    ck_assert_str_eq(config_template(json_pack("{s:s}", "bos_token", "<s>")), "(none)");
    /* refused: not JSON, a duplicate key, a template that is not text */
    ds_tok_files tf = {.config = "not json", .config_len = 8};
    ds_tok_config cfg;
    ck_assert_int_eq(ds_tok_config_parse("t", &tf, &cfg), DS_EXIT_INPUT);
    const char *dup = "{\"chat_template\": \"a\", \"chat_template\": \"b\"}";
    tf.config = (char *)dup, tf.config_len = strlen(dup);
    ck_assert_int_eq(ds_tok_config_parse("t", &tf, &cfg), DS_EXIT_INPUT);
    ck_assert_str_eq(config_template(json_pack("{s:i}", "chat_template", 3)), "(error)");
}
END_TEST

/* The shipped Llama-2-style tokenizer_config.json has no template; the Llama
 * 3 one (when fetched) holds llama3's. */
START_TEST(test_tokenizer_load)
{
    char path[4300];
    ds_tokenizer tok;
    snprintf(path, sizeof path, "%s/data/tokenizers/llama2-style-32k/tokenizer.json", top);
    ck_assert_msg(ds_tokenizer_load(path, 0, &tok) == 0, "%s", ds_errmsg());
    ck_assert_str_eq(tok.chat_template, "");
    ck_assert_int_eq(tok.chat_template_other, 0);
    ds_tokenizer_free(&tok);
    const char *l3 = getenv("DS_LLAMA3_TOKENIZER"), *home = getenv("HOME");
    if (l3) snprintf(path, sizeof path, "%s", l3);
    else snprintf(path, sizeof path, "%s/.cache/deltasoup/tokenizers/llama3-128k/tokenizer.json", home ? home : "");
    FILE *f = fopen(path, "r");
    if (!f) return;
    fclose(f);
    ck_assert_msg(ds_tokenizer_load(path, 0, &tok) == 0, "%s", ds_errmsg());
    ck_assert_str_eq(tok.chat_template, "llama3");
    ck_assert_int_eq(tok.chat_template_other, 0);
    ds_tokenizer_free(&tok);
}
END_TEST

int main(void)
{
    const char *src = getenv("top_srcdir");
    snprintf(top, sizeof top, "%s", src ? src : ".");
    Suite *s = suite_create("chat");
    TCase *vec = ds_check_case(s, "vectors", 60);
    tcase_add_test(vec, test_vectors);
    TCase *j2 = ds_check_case(s, "jinja2", 60);
    tcase_add_test(j2, test_jinja2_cases);
    TCase *err = ds_check_case(s, "errors", 60);
    tcase_add_test(err, test_errors);
    TCase *rec = ds_check_case(s, "recognize", 60);
    tcase_add_test(rec, test_recognize);
    TCase *load = ds_check_case(s, "tokenizer-load", 120);
    tcase_add_test(load, test_tokenizer_load);
    return ds_check_run(s);
}
