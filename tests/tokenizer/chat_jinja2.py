#!/usr/bin/python3
"""The chat vectors' texts (tests/data/tokenizers/*-chat.jsonl, rendered by
@huggingface/jinja) rendered again with Python's jinja2 as transformers'
apply_chat_template sets it up (sandboxed, trim_blocks, lstrip_blocks,
raise_exception): the same text, or an error where the reference raised.
usage: chat_jinja2.py VECTORS.jsonl...; exit 77 without jinja2."""
import json
import sys

try:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("chat_jinja2: no jinja2 for /usr/bin/python3: skipped")
    sys.exit(77)

BOS = {"llama3": ("<|begin_of_text|>", "<|end_of_text|>")}


def raise_exception(message):
    raise TemplateError(message)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
bad = n = 0
for path in sys.argv[1:]:
    jinja = {}
    for line in open(path, encoding="utf-8"):
        rec = json.loads(line)
        if "jinja" in rec:
            jinja[rec["template"]] = env.from_string(rec["jinja"])
            continue
        bos, eos = BOS.get(rec["template"], ("<s>", "</s>"))
        try:
            text = jinja[rec["template"]].render(messages=rec["messages"], add_generation_prompt=rec["add_generation_prompt"],
                                                bos_token=bos, eos_token=eos)
            err = None
        except TemplateError as e:
            text, err = None, str(e)
        n += 1
        if err != rec.get("error") or text != rec.get("text"):
            bad += 1
            print(f"{path}: {rec['template']} {rec['name']}: jinja2 {text!r} / {err!r}, reference {rec.get('text')!r} / {rec.get('error')!r}")
print(f"chat_jinja2: {n - bad} of {n} renders equal")
sys.exit(1 if bad else 0)
