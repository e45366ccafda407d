#!/usr/bin/env bash
# Create/refresh .venv with glmtrt (editable) and its test + serve extras.
# Used by `make install` and by .ci/run, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPIP="$VENV/bin/python -m pip"
$VPIP install -q --disable-pip-version-check --upgrade pip
# CPU torch, pinned, so pip does not pull a multi-GB CUDA build where a CPU wheel is at hand;
# falls back to whatever torch the index offers (set GLMTRT_TORCH_VERSION to choose).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  $VPIP install -q --disable-pip-version-check "torch==${GLMTRT_TORCH_VERSION:-2.13.0}" \
    || $VPIP install -q --disable-pip-version-check torch
fi
$VPIP install -q --disable-pip-version-check -e '.[test]'
# Debian's chromium (+ a CJK font for readable screenshots) for the web chat's browser test;
# installed only as root where apt-get exists, otherwise that test skips with the reason.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei) \
      >/dev/null 2>&1 || echo "chromium: apt-get install failed; the browser test will skip"
  else
    echo "chromium not installed (needs root and apt-get); the browser test will skip"
  fi
fi
echo "installed glmtrt into $VENV ($("$VENV/bin/python" --version))"
