#!/usr/bin/env bash
# A separate virtual environment (.venv-openai) with the official `openai`
# package and its Realtime extra. It lives apart from .venv because openai pins
# websockets<16 while the rest of the project may use a newer one. Built once;
# reused while the pinned requirement is unchanged. Prints the venv's python.
#   scripts/openai_venv.sh            build if needed, print .venv-openai/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${OPENAI_VENV:-.venv-openai}
# The `realtime` extra brings websockets>=13,<16 (the client's transport).
REQ='openai[realtime]>=1.107'
stamp="$VENV/.installed-$(printf '%s' "$REQ" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "$REQ" >&2
  # should a release drop the extra, pip only warns: install its transport by hand
  "$VENV/bin/python" -c 'import websockets' 2>/dev/null ||
    "$VENV/bin/pip" install -q --disable-pip-version-check 'websockets>=13,<16' >&2
  "$VENV/bin/python" -c 'import openai, websockets; from openai.resources.realtime import realtime' >&2
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
echo "$PWD/$VENV/bin/python"
