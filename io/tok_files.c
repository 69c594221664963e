/* A Hugging Face tokenizer as the bytes of its files (io/tok_files.h). */
#include "config.h"
#include "io/tok_files.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_tokenizer.h"
#include "src/chat.h"
#include "src/ds.h"

void ds_tok_files_free(ds_tok_files *tf)
{
    free(tf->json);
    free(tf->config);
    memset(tf, 0, sizeof *tf);
}

static char *dup_bytes(const char *p, size_t n)
{
    if (!p) return NULL;
    char *d = ds_malloc(n + 1);
    memcpy(d, p, n);
    d[n] = 0;
    return d;
}

void ds_tok_files_copy(ds_tok_files *dst, const ds_tok_files *src)
{
    dst->json = dup_bytes(src->json, src->json_len);
    dst->json_len = src->json_len;
    dst->config = dup_bytes(src->config, src->config_len);
    dst->config_len = src->config_len;
}

int ds_tok_files_read(const char *path, ds_tok_files *tf)
{
    memset(tf, 0, sizeof *tf);
    int rc = ds_read_file(path, &tf->json, &tf->json_len);
    if (rc) return rc;
    char *cpath = ds_tok_hf_config_beside(path);
    if (ds_file_exists(cpath)) rc = ds_read_file(cpath, &tf->config, &tf->config_len);
    free(cpath);
    if (rc) ds_tok_files_free(tf);
    return rc;
}

/* A special token as tokenizer_config.json gives it: "text" or {"content": "text", ...}. */
static int token_text(const char *what, json_t *root, const char *key, char **out)
{
    json_t *v = json_object_get(root, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (v && !json_is_null(v) && !json_is_string(v))
        return ds_err(DS_EXIT_INPUT, "%s: %s is not a string or {\"content\": string}", what, key);
    *out = ds_strdup(json_is_string(v) ? json_string_value(v) : "");
    return 0;
}

static int template_text(const char *what, json_t *root, char **out)
{
    json_t *v = json_object_get(root, "chat_template");
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        json_t *pick = NULL, *e;
        size_t i;
        json_array_foreach(v, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (!pick || (name && strcmp(name, "default") == 0)) pick = e;
        }
        v = json_object_get(pick, "template");
    }
    if (!json_is_string(v))
        return ds_err(DS_EXIT_INPUT, "%s: chat_template is not a string or a list of {\"name\", \"template\"}", what);
    *out = ds_strdup(json_string_value(v));
    return 0;
}

int ds_tok_config_parse(const char *what, const ds_tok_files *tf, ds_tok_config *c)
{
    memset(c, 0, sizeof *c);
    c->add_bos_token = -1;
    if (!tf->config) {
        c->bos_token = ds_strdup("");
        c->eos_token = ds_strdup("");
        return 0;
    }
    json_error_t je;
    json_t *root = json_loadb(tf->config, tf->config_len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return ds_err(DS_EXIT_INPUT, "%s: tokenizer_config.json: %s", what,
                      root ? "not a JSON object" : je.text);
    }
    int rc = token_text(what, root, "bos_token", &c->bos_token);
    if (!rc) rc = token_text(what, root, "eos_token", &c->eos_token);
    json_t *ab = json_object_get(root, "add_bos_token");
    if (!rc && ab && !json_is_boolean(ab) && !json_is_null(ab))
        rc = ds_err(DS_EXIT_INPUT, "%s: add_bos_token is not a boolean", what);
    if (json_is_boolean(ab)) c->add_bos_token = json_is_true(ab);
    if (!rc) rc = template_text(what, root, &c->chat_template);
    json_decref(root);
    if (rc) ds_tok_config_free(c);
    return rc;
}

void ds_tok_config_free(ds_tok_config *c)
{
    free(c->bos_token);
    free(c->eos_token);
    free(c->chat_template);
    memset(c, 0, sizeof *c);
}

/* The built-in chat template (src/chat.h) the model's own equals, or "". */
static void chat_name(const ds_tok_config *c, ds_tokenizer *tok)
{
    const char *name = c->chat_template ? ds_chat_recognize(c->chat_template) : NULL;
    snprintf(tok->chat_template, sizeof tok->chat_template, "%s", name ? name : "");
    tok->chat_template_other = c->chat_template && !name;
}

int ds_tok_files_load(const char *what, const ds_tok_files *tf, int vocab_size, ds_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    ds_tok_config c;
    int rc = ds_tok_config_parse(what, tf, &c);
    if (rc) return rc;
    ds_tok_hf *hf = NULL;
    rc = ds_tok_hf_load_text(what, tf->json, tf->json_len, tf->config, tf->config_len, &hf);
    if (!rc && vocab_size > 0 && ds_tok_hf_n_ids(hf) > vocab_size)
        rc = ds_err(DS_EXIT_INPUT, "%s: the tokenizer has %d ids for a vocabulary of %d", what, ds_tok_hf_n_ids(hf),
                    vocab_size);
    if (rc) {
        ds_tok_hf_free(hf);
        ds_tok_config_free(&c);
        return rc;
    }
    ds_tokenizer_from_hf(hf, tok);
    chat_name(&c, tok);
    ds_tok_config_free(&c);
    ds_tok_files_copy(&tok->files, tf);
    return 0;
}

const ds_tok_files *ds_tok_files_of(const ds_tokenizer *tok)
{
    return tok->hf && tok->files.json ? &tok->files : NULL;
}
