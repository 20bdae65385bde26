#!/bin/sh
# Assembles the image's userland for reading a live ruleset: iptables (legacy and nft backends), nft and the
# shared libraries they load, from Debian packages at the versions pinned in packages.lock, unpacked with
# `dpkg -x` (no maintainer scripts run, no base image pulled). The Containerfile copies OUTDIR to /.
#
#   deploy/image/rootfs.sh OUTDIR     download the pinned .debs (cached in OUTDIR.debs) and unpack them
#   deploy/image/rootfs.sh --lock     resolve the dependency closure of iptables and nftables from the
#                                     configured apt sources and rewrite packages.lock with exact versions
#
# Needs apt-get, apt-cache, dpkg-deb and readelf (binutils). After unpacking, every ELF file's DT_NEEDED
# libraries must be inside OUTDIR, or the script fails naming the missing ones: the closure is checked, not
# assumed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
lock="$here/packages.lock"
# What the doctor runs; everything else in the lock is what these depend on.
top="iptables nftables"
# Dependencies that add nothing a dump needs: gcc-12-base holds only documentation.
skip=" gcc-12-base "

if [ "${1:-}" = "--lock" ]; then
    tmp="$lock.tmp"
    {
        echo "# Pinned by deploy/image/rootfs.sh --lock: package=version, the dependency closure of: $top"
        apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances $top | grep -v '^[ <]' | sort -u | while read -r p; do
            case "$skip" in *" $p "*) continue ;; esac
            v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
            [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "no candidate version for $p" >&2; exit 1; }
            echo "$p=$v"
        done
    } >"$tmp"
    mv "$tmp" "$lock"
    exit 0
fi

out=${1:?usage: rootfs.sh OUTDIR | --lock}
debs="$out.debs"
mkdir -p "$out" "$debs"
arch=$(dpkg --print-architecture)
grep -v '^#' "$lock" | while IFS='=' read -r pkg ver; do
    [ -n "$pkg" ] || continue
    # apt-get download names the file pkg_version_arch.deb, with an epoch's ':' as %3a.
    file="$debs/${pkg}_$(printf %s "$ver" | sed 's/:/%3a/')_"
    deb=$(ls "$file$arch.deb" "${file}all.deb" 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        (cd "$debs" && apt-get download -q=2 -o APT::Sandbox::User=root "$pkg=$ver")
        deb=$(ls "$file$arch.deb" "${file}all.deb" 2>/dev/null | head -n 1)
    fi
    dpkg-deb -x "$deb" "$out"
done

# Documentation, locales and charset converters are not read by a dump.
rm -rf "$out/usr/share/doc" "$out/usr/share/man" "$out/usr/share/info" "$out/usr/share/locale" \
    "$out/usr/share/lintian" "$out/usr/lib/$(uname -m)-linux-gnu/gconv"

# The names kube-proxy's iptables-wrapper and admins call (Debian makes these with update-alternatives,
# which dpkg -x does not run): plain iptables is the nf_tables backend, as on Debian since 10.
for t in iptables iptables-save ip6tables ip6tables-save; do
    ln -sf "xtables-nft-multi" "$out/usr/sbin/$t"
done

# Every library an ELF file needs must be in the rootfs.
missing=""
for f in $(find "$out" -type f \( -perm -u+x -o -name '*.so*' \)); do
    readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
        found=""
        for d in lib lib64 usr/lib "lib/$(uname -m)-linux-gnu" "usr/lib/$(uname -m)-linux-gnu"; do
            if [ -e "$out/$d/$lib" ] || [ -L "$out/$d/$lib" ]; then found=1; break; fi
        done
        [ -n "$found" ] || echo "${f#"$out"/} needs $lib"
    done
done >"$out.missing"
if [ -s "$out.missing" ]; then
    echo "the rootfs misses libraries (add their packages to packages.lock):" >&2
    cat "$out.missing" >&2
    exit 1
fi
rm -f "$out.missing"
