#!/usr/bin/env bash
# The test command (`npm test`): C++ unit tests under ctest, then the Node test runner.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/Release/yolo26_native.node ] || [ ! -f dist/index.js ]; then
  echo "test: the addon or dist/ is missing; run 'npm run setup' first" >&2
  exit 1
fi
# As the Node package does (ts/native.ts): OpenMP workers spin briefly, then sleep.
if [ -z "${OMP_WAIT_POLICY:-}" ]; then export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000}; fi
status=0
if [ -f build/CTestTestfile.cmake ]; then
  ctest --test-dir build --output-on-failure -j1 || status=1
else
  echo "test: C++ tests were not built (npm run build:native builds them)" >&2
  status=1
fi
node --test --test-concurrency=1 test/*.test.mjs || status=1
exit $status
