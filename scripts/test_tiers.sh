#!/usr/bin/env bash
# `make test`: run every test tier, even after one fails, then list the tiers
# that failed. Exit status is non-zero when any tier failed, so CI stays red.
#   scripts/test_tiers.sh [TIER...]     (default: every tier; browser only with chromium)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tiers=("$@")
if [ ${#tiers[@]} -eq 0 ]; then
  tiers=(unit fuzz integration e2e observability load deploy)
  if command -v chromium >/dev/null 2>&1; then tiers+=(browser)
  else echo "chromium not installed: browser tier skipped"; fi
fi
failed=()
summary=()
for tier in "${tiers[@]}"; do
  [ -d "tests/$tier" ] || { echo "no tests/$tier: skipped"; continue; }
  echo "==> tier $tier"
  t0=$SECONDS
  # The unit and fuzz tiers start no shared stack (what servers and Redis they
  # start are their own, on free ports, files under tmp_path): they run on
  # up to 4 cores (TEST_WORKERS, default auto; 0 = in this process), a test
  # file per worker so module-scoped model fixtures load once. The other
  # tiers share one real stack per module and stay serial.
  par=()
  case $tier in unit|fuzz) par=(-n "${TEST_WORKERS:-auto}" --maxprocesses 4 --dist loadfile) ;; esac
  "$PY" -m pytest --durations=8 ${par[@]+"${par[@]}"} "tests/$tier"   # the slowest tests, to see where CI time goes
  rc=$?
  summary+=("$(printf '%-14s %s (%d s)' "$tier" "$([ $rc = 0 ] && echo passed || echo "FAILED (pytest exit $rc)")" $((SECONDS - t0)))")
  [ $rc = 0 ] || failed+=("$tier")
done
echo
echo "==> test tiers"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "failed tiers: ${failed[*]} (each tier's own summary above lists its failures)"
  exit 1
fi
echo "all tiers passed"
