#!/bin/sh
# bench/scaling_model.py (docs/scaling.md): the parameter counts of Llama-2-7B
# and -70B from their shapes equal the official ones, the 7B delta's bytes
# equal docs/bitdelta.md's hand counts (embeddings dense, and in 1 bit), core-seconds follow from the rates
# (a rate twice as high halves them), no step's time grows with the node
# count, bad --rates / --set / --nodes are refused, and the table in
# docs/scaling.md is what the script prints now.
. "$(dirname "$0")/../defaults.sh"
set -eu
model="$top_srcdir/bench/scaling_model.py"
dir=$(mktemp -d "${TMPDIR:-/tmp}/ds-scaling-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$PYTHON3" "$model" --json > "$dir/a.json"
# the same rates, compress's and the median's twice as high
"$PYTHON3" -c 'import json, sys; r = json.load(open(sys.argv[1]))["rates"]
json.dump({"compress_gbs": 2 * r["compress_gbs"], "agg_median": 2 * r["agg_median"]}, sys.stdout)' "$dir/a.json" > "$dir/rates.json"
"$PYTHON3" "$model" --json --rates "$dir/rates.json" > "$dir/b.json"
"$PYTHON3" - "$dir/a.json" "$dir/b.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
want = {"llama2-7b": 6738415616, "llama2-70b": 68976648192}
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
for sc, sb in zip(a["scenarios"], b["scenarios"]):
    m, f = sc["model"], sc["shape"]
    check(f["params"] == want[m], "%s: %d parameters, want %d" % (m, f["params"], want[m]))
    check(f["coords_1bit"] + f["coords_dense"] == f["params"], m + ": 1-bit + dense != parameters")
    check(f["base_bytes"] == 2 * f["params"], m + ": bf16 base bytes")
    if m == "llama2-7b":
        # docs/bitdelta.md: signs 809,500,672 + scales 896 + dense 524,820,480
        check(f["delta_bytes"] == 809500672 + 896 + 524820480, "7b delta bytes %d" % f["delta_bytes"])
        # and with --bits-for the embeddings and head, --scale row: signs 842,268,672 + scales 5,695,488 + norms 532,480
        e = sc["shape_embed_1bit"]
        check(e["delta_bytes"] == 842268672 + 5695488 + 532480, "7b delta bytes with 1-bit embeddings %d" % e["delta_bytes"])
    n = sc["users"]
    prev = None
    for x, y in zip(sc["by_nodes"], sb["by_nodes"]):
        comp = x["jobs"][1]
        check(comp["job"] == "compress", "job order")
        exp = n * 2 * f["base_bytes"] / (a["rates"]["compress_gbs"] * 1e9)
        check(abs(comp["core_seconds"] - exp) <= 1e-9 * exp, "%s: compress core-seconds %g, want %g" % (m, comp["core_seconds"], exp))
        check(abs(y["jobs"][1]["core_seconds"] * 2 - comp["core_seconds"]) <= 1e-6 * exp, m + ": 2x compress rate does not halve its core-seconds")
        bits = n * f["coords_1bit"] / a["rates"]["agg_median"]
        got = x["aggregate"]["median"]["core_seconds"] - y["aggregate"]["median"]["core_seconds"]
        check(abs(got - bits / 2) <= 1e-6 * bits, m + ": 2x median rate does not halve its 1-bit part")
        check(x["aggregate"]["multi-krum"]["comm"]["krum_pairs"] == n * (n - 1) // 2, m + ": Krum pairs")
        walls = [j["wall_seconds"] for j in x["jobs"]] + [x["aggregate"][k]["wall_seconds"] for k in sorted(x["aggregate"])]
        check(all(w > 0 for w in walls), m + ": a zero or negative time")
        if prev is not None:
            check(x["nodes"] > prev["nodes"], "node counts not increasing")
            for w0, w1 in zip(prev["walls"], walls):
                check(w1 <= w0 * (1 + 1e-12), "%s: a step takes longer on %d nodes (%g s) than on %d (%g s)" % (m, x["nodes"], w1, prev["nodes"], w0))
            for k, v in x["night_seconds"].items():
                check(v <= prev["night"][k] * (1 + 1e-12), "%s %s: the night takes longer on %d nodes" % (m, k, x["nodes"]))
            # on all N nodes (no choice of k): the CPU part and the file-system part never grow
            for k, j in x["aggregate_on_all_nodes"].items():
                for part in ("cpu", "fs"):
                    check(j["parts"][part] <= prev["raw"][k]["parts"][part] * (1 + 1e-12),
                          "%s aggregate %s: the %s part grows from %d to %d nodes" % (m, k, part, prev["nodes"], x["nodes"]))
        prev = {"nodes": x["nodes"], "walls": walls, "night": x["night_seconds"], "raw": x["aggregate_on_all_nodes"]}
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("scaling model: counts, rates and monotonicity ok")
PY
# refusals: an unknown rate, a bad parameter, bad node counts
echo '{"no_such_rate": 1}' > "$dir/bad.json"
for args in "--rates $dir/bad.json" "--rates $dir/missing.json" "--set nope=1" "--nodes 0" "--nodes x"; do
    # shellcheck disable=SC2086
    if "$PYTHON3" "$model" $args > "$dir/out" 2> "$dir/err"; then
        echo "accepted: $args"; exit 1
    fi
    grep -q 'scaling_model.py: ' "$dir/err" || { echo "no one-line error for: $args"; cat "$dir/err"; exit 1; }
done
# docs/scaling.md holds the script's table as it prints it now
"$PYTHON3" "$model" > "$dir/table.txt"
sed -n '/^<!-- scaling_model.py output begins -->$/,/^<!-- scaling_model.py output ends -->$/p' \
    "$top_srcdir/docs/scaling.md" | sed '1d;$d' > "$dir/doc.txt"
if ! cmp -s "$dir/table.txt" "$dir/doc.txt"; then
    echo "docs/scaling.md's table is not what bench/scaling_model.py prints: regenerate it (docs/scaling.md says how)"
    diff "$dir/doc.txt" "$dir/table.txt" | head -n 20
    exit 1
fi
echo ok
