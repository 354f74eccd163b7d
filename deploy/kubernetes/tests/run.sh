#!/bin/sh
# CTest's deploy.kubernetes: installs the validator's npm packages (pinned by package-lock.json)
# into the build tree with `npm ci` (the registry is needed once; a stamp of the lock file skips
# it after), then runs validate.js offline. Usage: run.sh BUILD_DIR VIAL
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$1
vial=$2
for tool in kubectl node npm; do
  command -v "$tool" >/dev/null || { echo "deploy.kubernetes: $tool is not on PATH (scripts/test installs it)"; exit 1; }
done
echo "deploy.kubernetes: $(kubectl version --client 2>/dev/null | head -1), node $(node --version)"
modules=$build/deploy/kubernetes-validator
stamp=$modules/package-lock.sha256
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$modules/node_modules" ]; then
  mkdir -p "$modules"
  cp "$here/package.json" "$here/package-lock.json" "$modules/"
  (cd "$modules" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
NODE_PATH=$modules/node_modules exec node "$here/validate.js" --kubectl kubectl --vial "$vial" \
  --manifests "$here/.."
