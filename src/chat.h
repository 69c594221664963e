/* Chat templates: named built-ins that reproduce the Jinja chat templates of
 * Hugging Face tokenizer_config.json files exactly (as transformers'
 * apply_chat_template renders them), without a Jinja interpreter:
 *  - llama3:  Meta-Llama-3-Instruct ('<|start_header_id|>' + role +
 *             '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>', BOS
 *             before the first message, then the assistant header);
 *  - llama2:  Llama-2-chat ([INST] ... [/INST], the system message as a
 *             <<SYS>> block inside the first user message, BOS per user turn);
 *  - mistral: Mistral-7B-Instruct v0.1/v0.2 (BOS, [INST] ... [/INST], user
 *             and assistant only);
 *  - chatml:  <|im_start|>role\ncontent<|im_end|>\n per message;
 *  - none:    no template of the model's: eval's plain-text dialogue
 *             "User: {prompt}\nAssistant:" (an earlier answer follows as
 *             " {answer}\n", a system message as "{content}\n"), encoded as
 *             plain text with the tokenizer's post-processor (BOS), as eval
 *             did before templates.
 * The Jinja texts each reproduces are kept in chat.c (ds_chat_recognize).
 * Pure: no files. */
#ifndef DS_CHAT_H
#define DS_CHAT_H

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 */
} ds_chat_msg;

/* The names of the built-ins, for messages: "llama3, llama2, mistral, chatml, none". */
const char *ds_chat_names(void);
/* 1 when NAME is a built-in template's name (none included). */
int ds_chat_known(const char *name);
/* The built-in whose known Jinja text equals JINJA_TEXT (ignoring leading
 * and trailing whitespace; the escape \n and a newline count as equal, as
 * they are inside a Jinja string literal), or NULL. */
const char *ds_chat_recognize(const char *jinja_text);
/* The Jinja text NAME reproduces (the first known one); NULL for none or an
 * unknown name. */
const char *ds_chat_jinja(const char *name);
/* 1 when the rendered text is encoded without the tokenizer's
 * post-processor specials (every template: they write bos_token
 * themselves, as apply_chat_template encodes with add_special_tokens=False);
 * 0 for none (a plain prompt gets BOS). */
int ds_chat_encode_plain(const char *name);

/* Render N messages with the built-in NAME into *OUT (malloc'd,
 * NUL-terminated). BOS_TOKEN/EOS_TOKEN are the tokenizer's texts (NULL:
 * ""). ADD_GENERATION_PROMPT as apply_chat_template's (llama2 and mistral
 * have none; the shipped llama3 one always adds the assistant header).
 * 0, or DS_EXIT_INPUT with one line in ds_err: an unknown template name, no
 * messages, a role other than system/user/assistant, or an order the
 * template rejects (its own raise_exception message, naming the message). */
int ds_chat_render(const char *name, const ds_chat_msg *msgs, int n, int add_generation_prompt,
                   const char *bos_token, const char *eos_token, char **out);
#endif
