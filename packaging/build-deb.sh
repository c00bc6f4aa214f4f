#!/usr/bin/env bash
# Builds the holdfast Debian packages from a staged tree with dpkg-deb:
#
#   packaging/build-deb.sh VERSION [OUTDIR]
#
# writes OUTDIR/holdfast_VERSION_amd64.deb and OUTDIR/holdfast_VERSION_arm64.deb
# (OUTDIR defaults to ./dist). The binaries are built static (CGO_ENABLED=0)
# from ./cmd/holdfast with VERSION stamped in, both architectures at once.
# There is no armhf package: Badger, the queue's store, does not work on
# 32-bit ARM.
#
# Options (before VERSION):
#   --arch ARCH   build only ARCH (amd64 or arm64); may be repeated
# Environment:
#   HOLDFAST_BIN_AMD64, HOLDFAST_BIN_ARM64   package this prebuilt binary for
#                                            that architecture instead of building
#   HOLDFAST_MAINTAINER                      the Maintainer field
#   SOURCE_DATE_EPOCH                        timestamps (default: last commit)
set -euo pipefail

die() { echo "build-deb: $*" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

arches=()
while [ $# -gt 0 ]; do
	case "$1" in
	--arch)
		[ $# -ge 2 ] || die "--arch needs a value (amd64 or arm64)"
		case "$2" in amd64|arm64) ;; *) die "--arch $2: only amd64 and arm64 are built (no armhf: Badger does not work on 32-bit ARM)";; esac
		arches+=("$2"); shift 2 ;;
	--arch=*)
		set -- --arch "${1#--arch=}" "${@:2}" ;;
	-h|--help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*)
		die "unknown option $1 (usage: build-deb.sh [--arch ARCH]... VERSION [OUTDIR])" ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: build-deb.sh [--arch ARCH]... VERSION [OUTDIR]"
version="$1"
outdir="${2:-$root/dist}"
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)

# A Debian version: digits first, then letters, digits and . + ~ (and - for a
# Debian revision). "v1.2.3" is a mistake worth catching here.
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] && [[ "$version" != *- ]] ||
	die "version \"$version\" is not a Debian version (like 1.2.3 or 1.2.3~rc1)"

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
conf="$here/holdfast.yaml"
[ -f "$conf" ] || die "$conf is missing: it is the annotated example config shipped as /etc/holdfast/holdfast.yaml"

maintainer="${HOLDFAST_MAINTAINER:-holdfast maintainers <maintainers@holdfast.invalid>}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Binaries: prebuilt ones from the environment, the others built in parallel.
declare -A bin pid
for a in "${arches[@]}"; do
	var="HOLDFAST_BIN_${a^^}"
	if [ -n "${!var:-}" ]; then
		[ -f "${!var}" ] || die "$var=${!var}: no such file"
		bin[$a]="${!var}"
		continue
	fi
	command -v go >/dev/null || die "go not found (PATH=$PATH)"
	bin[$a]="$work/bin-$a/holdfast"
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$a" go build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "${bin[$a]}" ./cmd/holdfast) \
		>"$work/build-$a.log" 2>&1 &
	pid[$a]=$!
done
for a in "${!pid[@]}"; do
	wait "${pid[$a]}" || { cat "$work/build-$a.log" >&2; die "go build for linux/$a failed"; }
done

# The ELF machine field (bytes 18-19) must match the package architecture.
elf_machine() { od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'; }
declare -A want_machine=([amd64]=3e00 [arm64]=b700)

# Debian changelog: one entry for this version. A version without a Debian
# revision is a native package, whose changelog is changelog.gz.
if [[ "$version" == *-* ]]; then changelog=changelog.Debian.gz; else changelog=changelog.gz; fi
{
	printf 'holdfast (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Release %s.\n\n' "$version"
	printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$work/changelog"

for a in "${arches[@]}"; do
	[ "$(head -c4 "${bin[$a]}" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || die "${bin[$a]}: not an ELF binary"
	[ "$(elf_machine "${bin[$a]}")" = "${want_machine[$a]}" ] || die "${bin[$a]}: not a linux/$a binary"

	s="$work/stage-$a"
	install -d -m 0755 "$s/DEBIAN" "$s/usr/bin" "$s/usr/lib/systemd/system" "$s/etc/holdfast" \
		"$s/usr/share/doc/holdfast" "$s/usr/share/man/man1" "$s/usr/share/lintian/overrides"
	install -m 0755 "${bin[$a]}" "$s/usr/bin/holdfast"
	install -m 0644 "$here/holdfast.service" "$s/usr/lib/systemd/system/holdfast.service"
	install -m 0644 "$conf" "$s/etc/holdfast/holdfast.yaml"
	install -m 0644 "$here/debian/copyright" "$s/usr/share/doc/holdfast/copyright"
	install -m 0644 "$here/debian/lintian-overrides" "$s/usr/share/lintian/overrides/holdfast"
	gzip -9n <"$work/changelog" >"$s/usr/share/doc/holdfast/$changelog"
	gzip -9n <"$here/holdfast.1" >"$s/usr/share/man/man1/holdfast.1.gz"
	chmod 0644 "$s/usr/share/doc/holdfast/$changelog" "$s/usr/share/man/man1/holdfast.1.gz"

	for f in postinst prerm postrm; do install -m 0755 "$here/debian/$f" "$s/DEBIAN/$f"; done
	echo /etc/holdfast/holdfast.yaml >"$s/DEBIAN/conffiles"
	(cd "$s" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
		sort -z | xargs -0 md5sum) >"$s/DEBIAN/md5sums"
	size="$(du -sk --apparent-size --exclude=DEBIAN "$s" | cut -f1)"
	sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$a/" -e "s/@SIZE@/$size/" \
		-e "s|@MAINTAINER@|$maintainer|" "$here/debian/control" >"$s/DEBIAN/control"
	chmod 0644 "$s/DEBIAN/control" "$s/DEBIAN/conffiles" "$s/DEBIAN/md5sums"

	dpkg-deb --root-owner-group -Zxz --build "$s" "$outdir/holdfast_${version}_${a}.deb" >/dev/null
	echo "$outdir/holdfast_${version}_${a}.deb"
done
