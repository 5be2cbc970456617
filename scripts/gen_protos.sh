#!/usr/bin/env bash
# Generate Python stubs from protos/ into gen/ (never edited by hand, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf gen && mkdir -p gen
"$PY" -m grpc_tools.protoc -I protos --python_out=gen --pyi_out=gen --grpc_python_out=gen protos/voice/v1/*.proto
touch gen/voice/__init__.py gen/voice/v1/__init__.py
echo "stubs generated in gen/"
