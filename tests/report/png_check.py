#!/usr/bin/python3
"""Check a screenshot of a report page whose charts were outlined in pure
green (svg.chart { outline: 2px solid #00ff00 }, added by render.sh):

    png_check.py PAGE.html SHOT.png

The PNG is decoded here (zlib and the five PNG row filters, standard
library only). Every outlined region is found (connected green pixels);
there must be one per <svg class="chart"> of the page, each the chart's
size (its width and height, plus the 1 px border and the 2 px outline on
each side), and each must hold ink: at least 3% of its pixels not white,
and at least 20 pixels of the series colors (the charts' blue or red)."""
import re
import struct
import sys
import zlib

BLUE, RED, GREEN = (31, 119, 180), (214, 39, 40), (0, 255, 0)


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("FAIL: %s is not a PNG" % path)
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6) or interlace:
        sys.exit("FAIL: PNG depth %d color type %d interlace %d: not handled" % (depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        elif f != 0:
            sys.exit("FAIL: bad PNG row filter %d" % f)
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    page, shot = sys.argv[1:3]
    sizes = [(int(a), int(b)) for a, b in
             re.findall(r'<svg class="chart" id="[^"]*" [^>]*width="(\d+)" height="(\d+)"', open(page).read())]
    w, h, bpp, rows = decode(shot)
    px = lambda x, y: tuple(rows[y][x * bpp:x * bpp + 3])
    green = set()
    g = bytes(GREEN)
    for y in range(h):
        r = rows[y]
        x = r.find(g)
        while x >= 0:
            if x % bpp == 0:
                green.add((x // bpp, y))
            x = r.find(g, x + 1)
    regions, seen = [], set()
    for p in green:
        if p in seen:
            continue
        stack, xs, ys = [p], [], []
        seen.add(p)
        while stack:
            x, y = stack.pop()
            xs.append(x), ys.append(y)
            for q in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if q in green and q not in seen:
                    seen.add(q)
                    stack.append(q)
        if len(xs) > 100:
            regions.append((min(xs), min(ys), max(xs), max(ys)))
    regions.sort(key=lambda b: (b[1], b[0]))
    print("%dx%d screenshot: %d charts in the page, %d outlined regions" % (w, h, len(sizes), len(regions)))
    if len(regions) != len(sizes):
        sys.exit("FAIL: %d chart regions on screen for %d charts" % (len(regions), len(sizes)))
    left = sorted(sizes)
    for (x0, y0, x1, y1) in regions:
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        match = [s for s in left if abs(s[0] + 6 - bw) <= 2 and abs(s[1] + 6 - bh) <= 2]
        if not match:
            sys.exit("FAIL: region %dx%d at (%d,%d) is the size of no chart (%s)" % (bw, bh, x0, y0, left))
        left.remove(match[0])
        ink = series = 0
        for y in range(y0 + 3, y1 - 2):
            for x in range(x0 + 3, x1 - 2):
                c = px(x, y)
                if c != (255, 255, 255):
                    ink += 1
                if c == BLUE or c == RED:
                    series += 1
        area = (bw - 6) * (bh - 6)
        print("  chart at (%d,%d) %dx%d: %.1f%% ink, %d series-colored pixels" % (x0, y0, bw - 6, bh - 6,
                                                                               100.0 * ink / area, series))
        if ink < 0.03 * area or series < 20:
            sys.exit("FAIL: the chart at (%d,%d) is (nearly) blank" % (x0, y0))
    print("PASS", shot)


main()
