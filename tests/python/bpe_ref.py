#!/usr/bin/env python3
"""Independent reference for io/tokenizer.c: SentencePiece-style BPE as
llama2.c's run.c encodes, written from the spec with the plain O(n^2) loop
(no heap), reading the llama2.c tokenizer file itself.

Usage: bpe_ref.py TOKENIZER.bin CORPUS_DIR ENCODER...
ENCODER is a command that reads one case per line on stdin (the text as hex
bytes; an empty line is the empty text), encodes each with BOS and prints
the ids separated by spaces, one line per case. This script builds the
cases, runs the encoder, and compares every case with its own encoding and
checks the round trip decode(encode(x)) == x. Exit 0 when all agree."""
import struct
import subprocess
import sys


def load(path):
    data = open(path, "rb").read()
    (maxlen,) = struct.unpack_from("<i", data, 0)
    off, pieces, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    return pieces, scores, lookup


def codepoints(b):
    """UTF-8 chunks as run.c groups them: a non-continuation byte starts a
    chunk, at most 3 continuation bytes follow it (a stray continuation byte
    starts its own chunk)."""
    out, i = [], 0
    while i < len(b):
        j = i + 1
        while j < len(b) and j - i < 4 and (b[j] & 0xC0) == 0x80:
            j += 1
        out.append(b[i:j])
        i = j
    return out


def encode(text, pieces, scores, lookup, bos=True):
    ids = []
    if text:
        # run.c adds the dummy prefix as its own piece before splitting the
        # text, so a text starting with continuation bytes does not join it.
        for cp in [b" "] + codepoints(text):
            if cp in lookup:
                ids.append(lookup[cp])
            else:
                ids.extend(3 + c for c in cp)
    while True:
        best, best_i, best_id = None, -1, -1
        for i in range(len(ids) - 1):
            m = lookup.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if m is not None and (best is None or scores[m] > best):
                best, best_i, best_id = scores[m], i, m
        if best_i < 0:
            break
        ids[best_i:best_i + 2] = [best_id]
    return ([1] if bos else []) + ids


def decode(ids, pieces):
    out, prev = b"", -1
    for t in ids:
        if t not in (1, 2):
            p = pieces[t]
            if prev == 1 and p.startswith(b" "):
                p = p[1:]
            if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
                p = bytes([int(p[3:5], 16)])
            out += p
        prev = t
    return out


def cases(corpus):
    c = [b"", b" ", b"a", b"the", b"  leading and trailing  ", b"Hello\nworld\n\n",
         "caf\u00e9 na\u00efve \u20ac5 \u2122 \u00e2".encode(), "\U0001F600 emoji, \u4e2d\u6587".encode(),
         b"\x80\x80 stray continuation, \xff\xfe invalid, \xe2\x82 cut", b"\x01\x02\x7f control",
         b"<s> </s> <unk> <0x41>", b"Lily's \"big\" ~[x]|y% \\ z",
         # overlapping equal-score pairs ("oo" twice): the leftmost must merge first
         b"zooo", b"Mmm, goood", b"llll pppp"]
    sample = open(corpus + "/tinystories_sample.txt", "rb").read()
    c.append(sample[:1500])  # includes an <|endoftext|> marker
    c.extend(s.strip() for s in sample.split(b"<|endoftext|>") if s.strip())
    paras = open(corpus + "/tinystories_train_excerpt.txt", "rb").read().split(b"\n\n")
    c.extend(p for p in paras if p)
    c.append(open(corpus + "/tinystories_valid_fragment.txt", "rb").read()[:600])
    return c


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    pieces, scores, lookup = load(sys.argv[1])
    cs = cases(sys.argv[2])
    stdin = "".join(c.hex() + "\n" for c in cs)
    run = subprocess.run(sys.argv[3:], input=stdin.encode(), stdout=subprocess.PIPE, check=True)
    got = run.stdout.decode().split("\n")
    bad = 0
    for k, text in enumerate(cs):
        want = encode(text, pieces, scores, lookup)
        have = [int(x) for x in got[k].split()] if k < len(got) else None
        if have != want:
            bad += 1
            if bad <= 5:
                print("MISMATCH case %d %r\n  ref %s\n  C   %s" % (k, text[:80], want, have))
        if decode(want, pieces) != text:
            bad += 1
            print("ROUNDTRIP case %d %r" % (k, text[:80]))
    print("bpe_ref: %d cases, %d bad" % (len(cs), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
