#!/usr/bin/env bash
# Shrinks fuzz/corpus/<target>/ to a small set with the same edge coverage, for committing.
#
# `cargo fuzz cmin` keeps every input that adds a feature (edges and their hit counts),
# smallest first, which leaves thousands of files. This counts edges only
# (-use_counters=0) and uses libFuzzer's greedy set cover (-set_cover_merge=1): a few
# hundred files. Usage: fuzz/minimize.sh <target>...
set -euo pipefail
cd "$(dirname "$0")"
flags=(-a -s none)
for t in "$@"; do
  cargo +nightly fuzz build "${flags[@]}" "$t"
  out=$(mktemp -d)
  "target/x86_64-unknown-linux-gnu/release/$t" -set_cover_merge=1 -use_counters=0 \
    -timeout=60 "$out" "corpus/$t" 2>&1 | grep -a 'MERGE-OUTER: .* new files' || true
  if [ -z "$(ls -A "$out")" ]; then
    echo "$t: the merge kept nothing; corpus left as it was" >&2
    exit 1
  fi
  # The decoders keep the golden wire vectors by name, whatever the merge chose.
  case $t in
    decode_json) vectors=../kad-core/testdata/wire-vectors/json ;;
    decode_bencode) vectors=../kad-core/testdata/wire-vectors/bencode ;;
    *) vectors= ;;
  esac
  if [ -n "$vectors" ]; then
    for v in "$vectors"/*; do
      rm -f "$out/$(sha1sum <"$v" | cut -d' ' -f1)"
      cp "$v" "$out/"
    done
  fi
  rm -rf "corpus/$t"
  mv "$out" "corpus/$t"
  chmod 755 "corpus/$t"
  echo "$t: $(ls "corpus/$t" | wc -l) files, $(cat "corpus/$t"/* | wc -c) bytes"
done
