#!/usr/bin/env bash
# A separate virtual environment (.venv-agents) with the `openai-agents`
# package, for tests/e2e/test_openai_agents.py: it brings its own openai and
# websockets pins, so it lives apart from .venv (as .venv-openai does). Built
# once; reused while the pinned requirement is unchanged. Prints the venv's python.
#   scripts/agents_venv.sh            build if needed, print .venv-agents/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${AGENTS_VENV:-.venv-agents}
REQ='openai-agents==0.24.0'
stamp="$VENV/.installed-$(printf '%s' "$REQ" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "$REQ" >&2
  "$VENV/bin/python" -c 'from agents.realtime import RealtimeAgent, RealtimeRunner' >&2
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
echo "$PWD/$VENV/bin/python"
