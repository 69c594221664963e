#!/usr/bin/python3
"""`deltasoup tokenize` against the reference vectors of one tokenizer
(tests/data/tokenizers/NAME.jsonl from make_hf_vectors.js, NAME-chat.jsonl
from make_chat_vectors.js): encode (ids, and ids_plain with --no-special),
decode (decoded_skip) of every short text and of every shipped file (by
SHA-256), and --chat of every message list the reference renders, with the
named template (and auto for the tokenizer's own). Each mode runs once over
a JSONL of all its cases, at 1 rank and (encode, chat) at 2 ranks with the
same output.
usage: tokenize_ref.py DELTASOUP TOKENIZER.json VECTORS.jsonl CHAT.jsonl TOP_SRCDIR WORKDIR [MPIEXEC]"""
import hashlib
import json
import os
import subprocess
import sys

ds, tok, vec, chat, top, work = sys.argv[1:7]
mpiexec = sys.argv[7] if len(sys.argv) > 7 else None
fails = []


def sha_ids(ids):
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def run(args, lines, ranks=1):
    path = os.path.join(work, "in.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for x in lines:
            f.write(json.dumps(x, ensure_ascii=False) + "\n")
    cmd = [ds, "tokenize", "--tokenizer", tok] + args + [path]
    if ranks > 1:
        cmd = mpiexec.split() + ["-n", str(ranks)] + cmd
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"tokenize {' '.join(args)}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    out = [json.loads(x.decode("utf-8")) for x in p.stdout.split(b"\n")[:-1]]
    if len(out) != len(lines):
        sys.exit(f"tokenize {' '.join(args)}: {len(out)} output lines for {len(lines)} input lines")
    return out, p.stdout


recs = [json.loads(x) for x in open(vec, encoding="utf-8")]
texts, keys = [], []
for r in recs:
    if "file" in r:
        with open(os.path.join(top, r["file"]), "rb") as f:
            texts.append(f.read().decode("utf-8"))
    else:
        texts.append(r["text"])
    keys.append(r)

# encode, with and without the post-processor's specials
enc, raw1 = run([], [{"text": t} for t in texts])
plain, _ = run(["--no-special"], [{"text": t} for t in texts])
for r, e, p in zip(keys, enc, plain):
    if "file" in r:
        if (len(e["ids"]), sha_ids(e["ids"])) != (r["n"], r["ids_sha256"]):
            fails.append(f"encode {r['name']}: {len(e['ids'])} ids, sha {sha_ids(e['ids'])[:12]}")
        if (len(p["ids"]), sha_ids(p["ids"])) != (r["n_plain"], r["ids_plain_sha256"]):
            fails.append(f"encode --no-special {r['name']}")
    else:
        if e["ids"] != r["ids"]:
            fails.append(f"encode {r['name']}: {e['ids'][:20]} != {r['ids'][:20]}")
        if p["ids"] != r["ids_plain"]:
            fails.append(f"encode --no-special {r['name']}: {p['ids'][:20]} != {r['ids_plain'][:20]}")

# decode the reference's ids, skipping special tokens
ids_in = [e["ids"] if "file" in r else r["ids"] for r, e in zip(keys, enc)]
dec, _ = run(["--decode"], [{"ids": i} for i in ids_in])
for r, d in zip(keys, dec):
    if "file" in r:
        if hashlib.sha256(d["text"].encode()).hexdigest() != r["decoded_skip_sha256"]:
            fails.append(f"decode {r['name']}")
    elif d["text"] != r["decoded_skip"]:
        fails.append(f"decode {r['name']}: {d['text']!r} != {r['decoded_skip']!r}")

# chat: every rendered message list, per template; the first template also as auto
crecs = [json.loads(x) for x in open(chat, encoding="utf-8")]
templates = [r["template"] for r in crecs if "jinja" in r]
n_chat = 0
for t in templates:
    cases = [r for r in crecs if r.get("template") == t and "ids" in r and r["add_generation_prompt"]]
    got, _ = run(["--chat", "--chat-template", t], [{"messages": r["messages"]} for r in cases])
    for r, g in zip(cases, got):
        n_chat += 1
        if g["ids"] != r["ids"]:
            fails.append(f"chat {t} {r['name']}: {g['ids'][:24]} != {r['ids'][:24]}")
    errs = [r for r in crecs if r.get("template") == t and "error" in r][:3]
    for r in errs:  # the template's rejections: exit 3 naming the file and line
        path = os.path.join(work, "bad.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps({"messages": r["messages"]}) + "\n")
        p = subprocess.run([ds, "tokenize", "--tokenizer", tok, "--chat", "--chat-template", t, path], capture_output=True)
        msg = p.stderr.decode()
        if p.returncode != 3 or p.stdout or f"{path}:1: chat template: message" not in msg or r["error"] not in msg:
            fails.append(f"chat {t} {r['name']}: exit {p.returncode}, {msg!r}")
if os.path.basename(chat).startswith("llama3"):  # the recorded template (tokenizer_config.json)
    cases = [r for r in crecs if "ids" in r and r["add_generation_prompt"]]
    got, _ = run(["--chat"], [{"messages": r["messages"]} for r in cases])
    fails += [f"chat auto {r['name']}" for r, g in zip(cases, got) if g["ids"] != r["ids"]]

# 2 ranks: the same bytes
if mpiexec:
    _, raw2 = run([], [{"text": t} for t in texts], ranks=2)
    if raw2 != raw1:
        fails.append("encode at 2 ranks differs from 1 rank")

for f in fails[:20]:
    print("FAIL", f)
print(f"tokenize_ref {os.path.basename(vec)}: {len(texts)} texts (encode, --no-special, decode), "
      f"{n_chat} chat renders ({', '.join(templates)}): {len(fails)} failures")
sys.exit(1 if fails else 0)
