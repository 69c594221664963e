#!/usr/bin/python3
"""Check a page of `deltasoup report` against the history it was made from.

    check_report.py REPORT.html HISTORY_DIR NIGHT

- the HTML parses with html.parser with every element closed in order (void
  elements aside), no <script>, no <link>, no src/href to another address;
- every number in the tables equals the JSON's (contributors from the
  aggregate report, metrics from both eval results, the nights' counts,
  timings and peak memory from night.json), the owners are the JSON's text
  (so escaped), the verdict per metric is the one in gate's own table;
- the SVGs: weights has 1 series with a bar per contributor, scatter 2
  series (or a note saying why there is none), one trend chart per metric
  with 2 series of one point slot per night up to NIGHT; every chart's y
  ticks evenly spaced at 1, 2 or 5 x 10^k.
Prints what it checked; exit 1 with the first difference."""
import json
import math
import os
import sys
from html.parser import HTMLParser

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors = [], []
        self.tables, self.svgs = {}, {}
        self.table = self.row = self.cell = None
        self.svg = None
        self.text_of = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" or tag == "link":
            self.errors.append("<%s> element" % tag)
        for k in ("src", "href"):
            if k in a and a[k] and not a[k].startswith("#"):
                self.errors.append("%s=%r" % (k, a[k]))
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self.table is not None:
            self.row = {"attrs": a, "cells": {}}
            self.table.append(self.row)
        elif tag in ("td",) and self.row is not None:
            self.cell = [a.get("data-col"), ""]
        elif tag == "svg":
            self.svg = self.svgs.setdefault(a.get("id"), {"series": [], "yticks": []})
        elif tag == "text" and self.svg is not None and a.get("text-anchor") == "end":
            self.cell = ["__ytick", ""]
        elif tag == "g" and self.svg is not None and a.get("class") == "series":
            self.svg["series"].append((a.get("data-name"), int(a.get("data-points")), {}))
        elif tag == "g" and self.svg is not None and a.get("class") == "point":
            self.svg["series"][-1][2][int(a["data-i"])] = a.get("data-marker")

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a and a[k] and not a[k].startswith("#"):
                self.errors.append("%s=%r" % (k, a[k]))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
            return
        self.stack.pop()
        if tag == "text" and self.cell is not None and self.cell[0] == "__ytick":
            self.svg["yticks"].append(self.cell[1].strip())
            self.cell = None
        elif tag == "td" and self.cell is not None:
            if self.cell[0]:
                self.row["cells"][self.cell[0]] = self.cell[1].strip()
            self.cell = None
        elif tag == "tr":
            self.row = None
        elif tag == "table":
            self.table = None
        elif tag == "svg":
            self.svg = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def same(text, value, what):
    if value is None:
        if text != "-":
            fail("%s: page says %r, the JSON has null" % (what, text))
        return
    if text == "-" or float(text) != float(value):
        fail("%s: page says %r, the JSON has %r" % (what, text, value))


def main():
    page_path, hist, night = sys.argv[1:4]
    p = Page()
    p.feed(open(page_path, encoding="utf-8").read())
    p.close()
    if p.errors:
        fail("HTML: " + "; ".join(p.errors[:5]))
    if p.stack:
        fail("HTML: unclosed elements %s" % p.stack)
    nights = sorted(d for d in os.listdir(hist) if not d.startswith(".") and os.path.isdir(os.path.join(hist, d)))
    nights = nights[:nights.index(night) + 1]
    rec = json.load(open(os.path.join(hist, night, "night.json")))
    files = rec.get("files", {})
    print("HTML well formed, self-contained; %d tables, %d charts" % (len(p.tables), len(p.svgs)))

    # every chart's y ticks: evenly spaced at a step of 1, 2 or 5 x 10^k
    for sid, svg in p.svgs.items():
        t = [float(x) for x in svg["yticks"]]
        if len(t) < 3:
            fail("chart %s: %d y ticks" % (sid, len(t)))
        step = t[1] - t[0]
        k = math.floor(math.log10(step) + 1e-9)
        if not any(abs(step - m * 10 ** k) < 1e-9 * step for m in (1, 2, 5, 10)) or \
                any(abs((b - a) - step) > 1e-6 * step for a, b in zip(t, t[1:])):
            fail("chart %s: y ticks %s are not nice numbers" % (sid, svg["yticks"]))
    print("y ticks of %d charts evenly spaced at 1, 2 or 5 x 10^k" % len(p.svgs))

    # contributors: the aggregate report
    if "aggregate" in files:
        agg = json.load(open(os.path.join(hist, night, files["aggregate"])))
        rows = {r["attrs"].get("data-index"): r["cells"] for r in p.tables["contributors"][1:]}
        for c in agg["contributors"]:
            cells = rows.get(str(c["index"]))
            if cells is None:
                fail("contributor %d missing" % c["index"])
            if cells["owner"] != c["owner"]:
                fail("owner %r shown as %r" % (c["owner"], cells["owner"]))
            if cells["content"] != c["content_sha256"][:16]:
                fail("content hash of %s" % c["owner"])
            for k in ("weight", "kept_fraction", "krum_score"):
                same(cells[k], c[k], "%s %s" % (c["owner"], k))
            if (cells["status"] == "kept") != (c["status"] == "used"):
                fail("%s status %r vs %r" % (c["owner"], cells["status"], c["status"]))
            if (cells["reason"] if cells["reason"] != "-" else "") != c["reason"]:
                fail("%s reason %r vs %r" % (c["owner"], cells["reason"], c["reason"]))
        filt = [r for r in p.tables["contributors"][1:] if r["attrs"].get("data-filter")]
        if len(filt) != len(rec.get("filter_rejected", [])):
            fail("filter rejections: %d in the page, %d in night.json" % (len(filt), len(rec["filter_rejected"])))
        # the norms: recomputed from the inspect records
        norms, eps = {}, {}
        for name in files.get("inspect", []):
            ins = json.load(open(os.path.join(hist, night, name)))
            s = sum(math.prod(t["shape"]) * (t["mean"] ** 2 + t["std"] ** 2) for t in ins["tensors"])
            norms[ins["content_sha256"]["computed"]] = math.sqrt(s)
            eps[ins["content_sha256"]["computed"]] = (ins.get("dp") or {}).get("epsilon")
        trusted = "trusted_keys" in agg.get("params", {})
        for c in agg["contributors"]:
            cells = rows[str(c["index"])]
            want = norms.get(c["content_sha256"])
            if want is not None and abs(float(cells["norm"]) - want) > 1e-12 * want:
                fail("%s norm %s, recomputed %r" % (c["owner"], cells["norm"], want))
            if c["content_sha256"] in eps:  # the recorded dp epsilon, or none
                e = eps[c["content_sha256"]]
                if (e is None and not cells["dp_epsilon"].startswith("not recorded")) or \
                        (e is not None and float(cells["dp_epsilon"].split()[0]) != e):
                    fail("%s dp epsilon %r, inspect has %r" % (c["owner"], cells["dp_epsilon"], e))
            sig_refused = c["status"] == "dropped" and ("sign" in c["reason"] or "key" in c["reason"])
            want_sig = "REFUSED" if trusted and sig_refused else "verified (trusted key)" if trusted else "not checked"
            if cells["signature"] != want_sig:
                fail("%s signature %r, want %r" % (c["owner"], cells["signature"], want_sig))
        w = p.svgs["weights"]["series"]
        if len(w) != 1 or w[0][1] != len(agg["contributors"]):
            fail("weights chart: %s" % w)
        krum = any(c["krum_score"] is not None for c in agg["contributors"])
        if krum:
            sc = p.svgs.get("scatter")
            if not sc or len(sc["series"]) != 2 or sum(s[1] for s in sc["series"]) != len(agg["contributors"]):
                fail("scatter chart: %s" % (sc,))
            flagged = sum(1 for c in agg["contributors"] if c["status"] != "used")
            if sc["series"][1][1] != flagged:
                fail("scatter: %d flagged points, %d contributors not used" % (sc["series"][1][1], flagged))
        elif "scatter" in p.svgs:
            fail("a scatter without scores")
        print("contributors: %d rows match the aggregate report (weights, kept fractions, Krum scores, "
              "norms recomputed); weights chart 1 series, scatter %s" %
              (len(agg["contributors"]), "2 series" if krum else "explained as not available"))

    # metrics: both eval results, and gate's own verdicts
    def rows_of(key):
        if key not in files:
            return {}
        d = json.load(open(os.path.join(hist, night, files[key])))
        return {(r["task"], os.path.basename(r["data"]), r["metric"]): r for r in d["results"]}
    base, cand = rows_of("baseline"), rows_of("candidate")
    gate = {}
    if "gate" in files:
        for line in open(os.path.join(hist, night, files["gate"])):
            f = line.split()
            if len(f) >= 8 and f[0] != "task" and f[3] in ("higher", "lower"):
                gate[(f[0], f[1], f[2])] = f[7]
    keys = list(dict.fromkeys(list(base) + list(cand)))
    if keys:
        mrows = {(r["cells"]["task"], r["cells"]["data"], r["cells"]["metric"]): r["cells"]
                 for r in p.tables["metrics"][1:]}
        for k in keys:
            cells = mrows.get(k)
            if cells is None:
                fail("metric %s missing" % (k,))
            same(cells["base"], base[k]["value"] if k in base else None, "%s reference" % (k,))
            same(cells["base_se"], base[k]["se"] if k in base else None, "%s reference se" % (k,))
            same(cells["cand"], cand[k]["value"] if k in cand else None, "%s soup" % (k,))
            same(cells["cand_se"], cand[k]["se"] if k in cand else None, "%s soup se" % (k,))
            if k in gate and cells["verdict"] != gate[k]:
                fail("%s: verdict %r, gate said %r" % (k, cells["verdict"], gate[k]))
        print("metrics: %d rows match both eval results; %d verdicts equal gate's" % (len(keys), len(gate)))

    # trends over the nights up to this one
    allkeys = []
    for n in nights:
        r = json.load(open(os.path.join(hist, n, "night.json"))).get("files", {})
        for key in ("baseline", "candidate"):
            if key in r:
                for x in json.load(open(os.path.join(hist, n, r[key])))["results"]:
                    k = (x["task"], os.path.basename(x["data"]), x["metric"])
                    if k not in allkeys:
                        allkeys.append(k)
    trends = [v for k, v in p.svgs.items() if k and k.startswith("trend-")]
    if len(trends) != len(allkeys):
        fail("%d trend charts for %d metrics" % (len(trends), len(allkeys)))
    status = [json.load(open(os.path.join(hist, n, "night.json")))["status"] for n in nights]
    for t in trends:
        if len(t["series"]) != 2 or any(s[1] != len(nights) for s in t["series"]):
            fail("trend chart series: %s" % t["series"])
        for i, m in t["series"][0][2].items():  # the soup's points: published vs not
            if m != ("circle" if status[i] == "published" else "cross"):
                fail("trend: night %s (%s) drawn as %s" % (nights[i], status[i], m))
    print("trends: %d charts of 2 series over %d nights (%s), published and other nights marked apart" %
          (len(trends), len(nights), " ".join(status)))
    nrows = p.tables["nights"][1:]
    if len(nrows) != len(nights):
        fail("nights table: %d rows for %d nights" % (len(nrows), len(nights)))
    for r, n in zip(nrows, nights):
        nj = json.load(open(os.path.join(hist, n, "night.json")))
        if r["cells"]["date"] != nj["date"] or r["cells"]["status"] != nj["status"]:
            fail("night %s: %s" % (n, r["cells"]))
        for k in ("collected", "accepted", "rejected"):
            same(r["cells"][k], nj.get(k), "night %s %s" % (n, k))

    # timings and peak memory
    tr = p.tables.get("timings", [None])[1:]
    if len(tr) != len(rec.get("timings", [])):
        fail("timings: %d rows, %d in night.json" % (len(tr), len(rec.get("timings", []))))
    for r, t in zip(tr, rec.get("timings", [])):
        if r["cells"]["step"] != t["step"]:
            fail("timing step %r vs %r" % (r["cells"]["step"], t["step"]))
        same(r["cells"]["seconds"], t["seconds"], "step %s seconds" % t["step"])
        same(r["cells"]["peak_rss_kb"], t["peak_rss_kb"], "step %s peak_rss_kb" % t["step"])
    print("timings: %d steps match night.json (peak %s kB)" % (len(tr), rec.get("peak_rss_kb")))
    print("PASS", page_path)


main()
