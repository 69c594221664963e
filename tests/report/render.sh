#!/bin/sh
# The report as a person sees it: headless Chromium (Debian package
# chromium, scripts/setup.sh) renders the page of the refused night of
# tests/report/data/history (its weights chart and one line chart per
# metric over three nights) to PNG; png_check.py decodes the PNG and checks
# that every chart is on screen at its size with ink in it. The charts are
# outlined in pure green in a copy of the page so the check can find them.
# Skips (77) without chromium.
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}
[ -n "$CHROMIUM" ] || { echo "SKIP: no chromium (apt-get install chromium; scripts/setup.sh)"; exit 77; }
w=$(mktemp -d "${TMPDIR:-/tmp}/ds-report-render.XXXXXX") || exit 99
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$DELTASOUP" report --history "$top_srcdir/tests/report/data/history" --night "${NIGHT:-2026-03-02}" \
    -o "$w/report.html" --quiet || fail "report: exit $?"
sed 's|</head>|<style>svg.chart{outline:2px solid #00ff00;outline-offset:0}</style></head>|' "$w/report.html" >"$w/page.html"
# Chromium as root needs --no-sandbox; its profile and crash folders go to $w.
HOME=$w timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$w/profile" \
    --force-device-scale-factor=1 --screenshot="$w/shot.png" --window-size=1200,3000 "file://$w/page.html" \
    >"$w/chromium.log" 2>&1
rc=$?
[ $rc = 0 ] && [ -s "$w/shot.png" ] || { cat "$w/chromium.log"; fail "chromium exit $rc"; }
"$PY" "$top_srcdir/tests/report/png_check.py" "$w/page.html" "$w/shot.png" || fail "screenshot"
[ -z "${KEEP_PNG:-}" ] || cp "$w/shot.png" "$KEEP_PNG"
echo "PASS: chromium renders the report with its charts in place"
