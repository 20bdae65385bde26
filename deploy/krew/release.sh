#!/usr/bin/env bash
# Packs the static binary for krew and writes the filled-in plugin manifest beside the archive.
#   deploy/krew/release.sh target/x86_64-unknown-linux-gnu/release/k8sdoctor dist \
#       https://example.org/k8sdoctor/releases/v0.1.0 https://example.org/k8sdoctor
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 BINARY OUTDIR URL_PREFIX HOMEPAGE" >&2
  exit 2
fi
bin=$1 out=$2 prefix=${3%/} homepage=$4
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/../../Cargo.toml" | head -n1)
archive="k8sdoctor-v$version-x86_64-linux.tar.gz"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/k8sdoctor"
# Reproducible: fixed owner, order and time, no gzip timestamp.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - k8sdoctor |
  gzip -n >"$out/$archive"
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
sed -e "s|@VERSION@|$version|" -e "s|@HOMEPAGE@|$homepage|" -e "s|@URI@|$prefix/$archive|" \
  -e "s|@SHA256@|$sha|" "$here/doctor.yaml" | sed '1,3d' >"$out/doctor.yaml"
echo "$out/$archive"
echo "$out/doctor.yaml"
