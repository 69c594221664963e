#!/usr/bin/python3
"""Writes the seed corpus of tests/fuzz/fuzz_hf_tokenizer.c into
tests/fuzz/hf_tokenizer_corpus/: small tokenizer.json files of both kinds
(JSON \\0 TEXT \\0 CONFIG), so that mutations start from well-formed input.
Usage: tests/fuzz/make_hf_tokenizer_corpus.py [OUTDIR]"""
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_tokenizer_corpus")
os.makedirs(out, exist_ok=True)
SP = "\u2581"


def write(name, tok, text, config=None):
    data = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
    data += b"\0" + text.encode()
    if config is not None:
        data += b"\0" + json.dumps(config).encode()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


# SentencePiece kind: Prepend + Replace, byte fallback, TemplateProcessing BOS.
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    vocab["<0x%02X>" % b] = len(vocab)
for p in [SP, "x", "y", "a", "b", SP + "x", SP + "y", "x" + SP, "ab", SP + "ab", SP + SP]:
    vocab[p] = len(vocab)
spm = {
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 2, "content": "</s>", "special": True}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SP},
                                                       {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": SP}, "content": " "},
                                                 {"type": "ByteFallback"}, {"type": "Fuse"},
                                                 {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
              "vocab": vocab, "merges": [SP + " x", "x " + SP, SP + " y", "a b", SP + " ab", SP + " " + SP]},
}
write("spm-basic", spm, "x y  ab <s>xx\u00e9 \u4f60 </s> y\n", {"bos_token": "<s>", "eos_token": "</s>"})
write("spm-noconfig", spm, "  x\tab  y x x")

# Byte-level kind: a Split regex (Llama 3's), ByteLevel map, ignore_merges.
def bl_char(b):
    keep = 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255
    return chr(b) if keep else None
m, n = {}, 256
for b in range(256):
    if bl_char(b):
        m[b] = bl_char(b)
    else:
        m[b] = chr(n)
        n += 1
bvocab = {m[b]: b for b in range(256)}
merges = []
for w in ["Hello", "\u0120world", "'s", "12", "\u0120t", "he"]:
    cur = w[0]
    for c in w[1:]:
        if cur + c not in bvocab:
            merges.append(cur + " " + c)
            bvocab[cur + c] = len(bvocab)
        cur += c
bvocab["<|eot|>"] = len(bvocab)
regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
bl = {
    "added_tokens": [{"id": bvocab["<|eot|>"], "content": "<|eot|>", "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "ignore_merges": True, "vocab": bvocab, "merges": merges},
}
write("bytelevel-basic", bl, "Hello world's 123456 THEY'LL  \n\n \u00e9\U0001F600<|eot|> x", {"eos_token": "<|eot|>"})
write("bytelevel-nomerge", dict(bl, model=dict(bl["model"], ignore_merges=False)), "hello\r\n\tthe 12 't")
