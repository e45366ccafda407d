#!/usr/bin/env bash
# int8-sq calibration benchmark (docs/BENCHMARKS.md): FP16 convert (baseline) and int8-sq
# calibration + convert of the ChatGLM3-6B-shaped checkpoint, in one run, wall time and peak RSS
# from GNU time -v. Usage: [PREFIX=name] scripts/bench_calibrate.sh SRC WORKDIR CALIB_JSONL [SAMPLES SEQ_LEN]
# Outputs go to WORKDIR/PREFIX-fp16 and WORKDIR/PREFIX-sq and are deleted at the end; the log stays in
# WORKDIR/PREFIX.log. CALIB_JSONL: {"input_ids"} lines (the 6B-shaped random checkpoint has no tokenizer).
set -euo pipefail
src=$1; work=$2; calib=$3; samples=${4:-16}; seq=${5:-256}
py=${PYTHON:-.venv/bin/python}
prefix=${PREFIX:-calib-bench}
log=$work/$prefix.log
: > "$log"
run() {  # name, glmtrt convert args...
  local name=$1; shift
  echo "== $name: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
  nice -n 10 /usr/bin/time -v "$py" -m glmtrt convert "$src" "$@" --force 2>&1 \
    | tr '\r' '\n' | grep -E "calibrate\+quantize|Elapsed|Maximum resident|User time|System time|Percent of CPU|wrote|rror|Command exited" \
    | tee -a "$log"
}
trap 'rm -rf "$work/$prefix-fp16" "$work/$prefix-sq"' EXIT
run fp16 -o "$work/$prefix-fp16" --precision fp16 --no-progress
rm -rf "$work/$prefix-fp16"
run int8-sq -o "$work/$prefix-sq" --precision int8-sq --calib-data "$calib" --calib-samples "$samples" --calib-seq-len "$seq"
echo "== end: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
