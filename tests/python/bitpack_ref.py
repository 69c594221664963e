"""Independent numpy reading of the BitDelta packing convention (docs/kernels.md).

Reads the cases `test_bitpack --dump FILE` wrote (inputs and the C kernels'
outputs) and recomputes every output from the spec alone:
  - delta = float32(W_f) - float32(W_b); bit = delta >= 0 (NaN -> 0);
    bit j of a row at bit j % 64 of little-endian uint64 word j // 64,
    rows padded with zero bits to whole words;
  - row sum of |delta|: 16 double lanes (lane k: j = k mod 16, in order),
    combined s[k] += s[k+8], s[k+4], s[k+2], then s0 + s1 -- bit for bit;
    and, loosely, equal to numpy's own sum (mean |delta| * cols);
  - column sums: rows added in order, bit for bit;
  - apply: convert(float32(W_b) + g * (2b - 1)) rounded to nearest even.
Usage: bitpack_ref.py FILE. Exit 0 when everything matches, 1 otherwise.
"""
import struct
import sys

import numpy as np

F32, F16, BF16 = 0, 1, 2
ESIZE = {F32: 4, F16: 2, BF16: 2}


def to_f32(dt, raw):
    if dt == F32:
        return np.frombuffer(raw, dtype="<f4").copy()
    u = np.frombuffer(raw, dtype="<u2")
    if dt == F16:
        return u.view(np.float16).astype(np.float32)
    return (u.astype(np.uint32) << 16).view(np.float32)


def from_f32(dt, x):
    """float32 -> dt bytes, round to nearest even (NaN quiet, sign kept)."""
    x = np.asarray(x, dtype=np.float32)
    if dt == F32:
        return x.astype("<f4").tobytes()
    if dt == F16:
        with np.errstate(over="ignore"):
            h = x.astype(np.float16).view(np.uint16)
        nan = np.isnan(x)
        h = np.where(nan, (h & 0x8000) | 0x7E00, h).astype("<u2")
        return h.tobytes()
    u = x.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    quiet = (u >> 16) | 0x40
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return (np.where(nan, quiet, rounded) & 0xFFFF).astype("<u2").tobytes()


def pack_rows(bits):
    """bool[rows, cols] -> uint64[rows, ceil(cols / 64)] (the layout)."""
    rows, cols = bits.shape
    wpr = (cols + 63) // 64
    padded = np.zeros((rows, wpr * 64), dtype=bool)
    padded[:, :cols] = bits
    by = np.packbits(padded, axis=1, bitorder="little")
    return by.view("<u8").reshape(rows, wpr)


def lane_sums(absd):
    """The contract's row sum: 16 lanes in double, then the fixed tree."""
    rows, cols = absd.shape
    lanes = np.zeros((rows, 16), dtype=np.float64)
    a = absd.astype(np.float64)
    for j0 in range(0, cols, 16):  # elementwise adds: each lane in order
        blk = a[:, j0:j0 + 16]
        lanes[:, :blk.shape[1]] += blk
    for w in (8, 4, 2, 1):
        lanes[:, :w] += lanes[:, w:2 * w]
    return lanes[:, 0]


def check_case(dt, rows, cols, kind, raw, pos, errors):
    n = rows * cols
    wpr = (cols + 63) // 64
    es = ESIZE[dt]

    def take(nbytes):
        nonlocal pos
        b = raw[pos:pos + nbytes]
        if len(b) != nbytes:
            raise ValueError("truncated dump")
        pos += nbytes
        return b

    wf = to_f32(dt, take(n * es)).reshape(rows, cols)
    wb = to_f32(dt, take(n * es)).reshape(rows, cols)
    words = np.frombuffer(take(rows * wpr * 8), dtype="<u8").reshape(rows, wpr)
    row_abs = np.frombuffer(take(rows * 8), dtype="<f8")
    col_abs = np.frombuffer(take(cols * 8), dtype="<f8")
    ng = 1 if kind == 0 else rows if kind == 1 else cols
    g = np.frombuffer(take(ng * 4), dtype="<f4")
    applied = take(n * es)

    name = "dtype %d rows %d cols %d kind %d" % (dt, rows, cols, kind)
    with np.errstate(invalid="ignore"):
        d = (wf - wb).astype(np.float32)
        bits = d >= 0
    if not np.array_equal(pack_rows(bits), words):
        errors.append(name + ": sign bits differ")
    absd = np.abs(d)
    if not np.array_equal(lane_sums(absd).view(np.uint64), row_abs.view(np.uint64)):
        errors.append(name + ": row sums differ from the lane-order sum")
    mean = absd.astype(np.float64).mean(axis=1)
    if not np.allclose(row_abs / cols, mean, rtol=1e-12, atol=0):
        errors.append(name + ": mean |delta| differs from numpy's")
    cs = np.zeros(cols, dtype=np.float64)
    for r in range(rows):
        cs += absd[r].astype(np.float64)
    if not np.array_equal(cs.view(np.uint64), col_abs.view(np.uint64)):
        errors.append(name + ": column sums differ")
    gg = (np.full((rows, cols), g[0]) if kind == 0 else
          np.repeat(g[:, None], cols, axis=1) if kind == 1 else
          np.repeat(g[None, :], rows, axis=0)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        want = (wb + np.where(bits, gg, -gg)).astype(np.float32)
    if from_f32(dt, want) != applied:
        errors.append(name + ": applied output differs")
    return pos


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bitpack_ref.py DUMPFILE")
    raw = open(sys.argv[1], "rb").read()
    if raw[:4] != b"BPK1":
        sys.exit("%s: not a test_bitpack dump" % sys.argv[1])
    pos, cases, errors = 4, 0, []
    while pos < len(raw):
        dt, rows, cols, kind = struct.unpack_from("<4i", raw, pos)
        pos = check_case(dt, rows, cols, kind, raw, pos + 16, errors)
        cases += 1
    for e in errors:
        print("FAIL", e)
    print("%s: %d cases, %d mismatches" % (sys.argv[1], cases, len(errors)))
    sys.exit(1 if errors or cases == 0 else 0)


if __name__ == "__main__":
    main()
