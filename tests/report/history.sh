#!/bin/sh
# deltasoup report on the 3-night history that slurm/nightly-soup.sbatch
# wrote (tests/report/data/history, made by make_history.sh: published,
# published with a damaged file and a scaled delta flagged by multi-krum,
# refused by the gate): every night's page checked against the JSON by
# check_report.py (valid HTML, numbers, verdicts, series counts), the same
# bytes at 2 ranks, owners escaped; then the errors: usage (exit 2), a
# missing or bad file of the history named (exit 3), an existing output
# (exit 4), and nothing written by a failed run.
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
"$PY" -c 'import html.parser' 2>/dev/null || { echo "SKIP: no $PY"; exit 77; }
w=$(mktemp -d "${TMPDIR:-/tmp}/ds-report-history.XXXXXX") || exit 99
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cp -r "$top_srcdir/tests/report/data/history" "$w/h" && chmod -R u+w "$w/h" || exit 99
cd "$w" || exit 99

for d in 2026-03-01 2026-03-02 2026-03-03; do
    "$DELTASOUP" report --history h --night $d -o r-$d.html --quiet || fail "report of $d: exit $?"
    "$PY" "$top_srcdir/tests/report/check_report.py" r-$d.html h $d || fail "page of $d"
done
# The default night is the last one; 2 ranks write the same bytes.
"$DELTASOUP" report --history h -o last.html >out.txt || fail "report without --night"
grep -q "night 2026-03-03 of 3" out.txt || fail "summary: $(cat out.txt)"
cmp -s last.html r-2026-03-03.html || fail "the default night is not the last"
$MPIEXEC -n 2 "$DELTASOUP" report --history h -o two.html --quiet || fail "2 ranks"
cmp -s two.html last.html || fail "2 ranks wrote another page"
grep -q '&lt;b&gt;eve&lt;/b&gt; &amp; &quot;co&quot;' r-2026-03-01.html || fail "the owner's HTML is not escaped"
grep -q '<b>eve' r-2026-03-01.html && fail "the owner's HTML is in the page as markup"
grep -q '<span class="refused">refused</span>' r-2026-03-03.html || fail "the refused night's page does not say so"

# expect CODE PATTERN ARGS...: the exit code, one error line matching
# PATTERN, no page and no staging file left.
expect()
{
    want=$1 pat=$2
    shift 2
    rm -f x.html x.html.tmp
    "$DELTASOUP" report "$@" >o.txt 2>e.txt
    rc=$?
    [ $rc = "$want" ] || fail "report $*: exit $rc, want $want: $(cat e.txt)"
    grep -q -- "$pat" e.txt || fail "report $*: error '$(cat e.txt)' does not match '$pat'"
    [ ! -e x.html ] && [ ! -e x.html.tmp ] || fail "report $*: wrote an output"
    echo "ok: exit $rc: $(head -n 1 e.txt)"
}
expect 2 "--history DIR is required" -o x.html
expect 2 "-o REPORT.html is required" --history h
expect 2 "unknown option" --history h -o x.html --bogus
expect 2 "--night 1999-01-01: no such night" --history h -o x.html --night 1999-01-01
expect 3 "nowhere: cannot open" --history nowhere -o x.html
mkdir empty
expect 3 "empty: no nights" --history empty -o x.html
cp -r h h1 && mkdir h1/2026-03-04
expect 3 "h1/2026-03-04/night.json: cannot read" --history h1 -o x.html
cp -r h h2 && printf '{"contributors": [' >h2/2026-03-02/aggregate.json
expect 3 "h2/2026-03-02/aggregate.json:1: not a JSON file" --history h2 -o x.html
cp -r h h3 && cp h3/2026-03-01/night.json h3/2026-03-01/candidate.json
expect 3 "h3/2026-03-01/candidate.json: not deltasoup eval results" --history h3 -o x.html
cp -r h h4 && rm h4/2026-03-03/inspect-2.json
expect 3 "h4/2026-03-03/inspect-2.json: cannot read" --history h4 -o x.html
cp -r h h5 && sed -i 's/"deltasoup.night"/"other"/' h5/2026-03-01/night.json
expect 3 "h5/2026-03-01/night.json: not a night record" --history h5 -o x.html
echo keep >x.html
"$DELTASOUP" report --history h -o x.html 2>e.txt
rc=$?
[ $rc = 4 ] && [ "$(cat x.html)" = keep ] || fail "an existing output: exit $rc, $(cat e.txt)"
"$DELTASOUP" report --history h -o x.html --overwrite --quiet && cmp -s x.html last.html || fail "--overwrite"
echo "PASS: pages of 3 nights match their JSON; errors named"
