#!/usr/bin/env bash
# Builds prebuilds/<platform>-<arch>/ with prebuildify, which has no cmake-js backend: point its
# PREBUILD_NODE_GYP at a shim that runs cmake-js and leaves the addon where prebuildify looks.
set -euo pipefail
cd "$(dirname "$0")/.."
shim=$(mktemp)
cat > "$shim" <<'SHIM'
#!/usr/bin/env node
const { execFileSync } = require('node:child_process');
// prebuildify calls `node-gyp rebuild ...`; cmake-js writes build/Release/yolo26_native.node.
execFileSync('npx', ['cmake-js', 'compile'], { stdio: 'inherit' });
SHIM
chmod +x "$shim"
PREBUILD_NODE_GYP="$shim" npx prebuildify --napi --strip
ls -l prebuilds/*/
rm -f "$shim"
