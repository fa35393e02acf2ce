#!/bin/sh
# Builds a Debian base image without pulling anything: debootstrap makes a
# root filesystem from the Debian mirror this machine's apt uses, and
# `docker import` turns it into an image. Needs root (debootstrap does) and
# the debootstrap package (scripts/test-deps.sh installs it).
#
#   images/debootstrap.sh [options] TAG
#     -s SUITE     Debian suite (default: this machine's, e.g. bookworm)
#     -m MIRROR    mirror URL (default: the first `deb` source of apt that
#                  carries SUITE, from /etc/apt/sources.list(.d))
#     -v VARIANT   debootstrap variant (default minbase: apt, dpkg, bash,
#                  coreutils; a 117 MB image)
#     -i PACKAGES  comma-separated packages to add (ca-certificates,curl)
#     -c DIR       keep downloaded .debs in DIR for the next build
#   images/debootstrap.sh -p [-s SUITE]   prints the mirror it would use
#
# The image's apt sources name the same mirror; its apt lists and caches
# are emptied (run apt-get update in a Dockerfile FROM it before
# installing). APT_SOURCES (default /etc/apt) is where apt's sources are
# read, for tests.
set -eu

usage() {
	echo "usage: $0 [-s suite] [-m mirror] [-v variant] [-i packages] [-c cache-dir] TAG | $0 -p [-s suite]" >&2
	exit 2
}

suite= mirror= variant=minbase include= cache= print=
while getopts s:m:v:i:c:p opt; do
	case $opt in
	s) suite=$OPTARG ;;
	m) mirror=$OPTARG ;;
	v) variant=$OPTARG ;;
	i) include=$OPTARG ;;
	c) cache=$OPTARG ;;
	p) print=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
sources=${APT_SOURCES:-/etc/apt}

if [ -z "$suite" ]; then
	# shellcheck disable=SC1091
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$suite" ] || { echo "$0: cannot tell this machine's Debian suite: give -s" >&2; exit 1; }
fi

# apt_mirror prints the URI of the first `deb` source that carries $suite:
# one-line sources.list entries ("deb [opts] URI SUITE COMPONENTS...") and
# deb822 .sources stanzas (Types/URIs/Suites, blank-line separated).
apt_mirror() {
	{
		[ -f "$sources/sources.list" ] && cat "$sources/sources.list"
		for f in "$sources"/sources.list.d/*.list; do [ -f "$f" ] && cat "$f"; done
	} 2>/dev/null | awk -v suite="$suite" '
		$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) == suite) { print $i; exit }
		}' | head -n 1
	for f in "$sources"/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$suite" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !found) {
					split(uris, u, " "); print u[1]; found = 1
				}
				types = ""; uris = ""; suites = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			tolower($1) == "types:" { $1 = ""; types = substr($0, 2) }
			tolower($1) == "uris:" { $1 = ""; uris = substr($0, 2) }
			tolower($1) == "suites:" { $1 = ""; suites = substr($0, 2) }
			END { flush() }' "$f"
	done
}

if [ -z "$mirror" ]; then
	mirror=$(apt_mirror | head -n 1)
	[ -n "$mirror" ] || { echo "$0: no deb source for $suite in $sources: give -m" >&2; exit 1; }
fi
if [ -n "$print" ]; then
	echo "$mirror"
	exit 0
fi
[ $# -eq 1 ] || usage
tag=$1
command -v debootstrap >/dev/null || { echo "$0: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/garrison-debootstrap.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
set -- --variant="$variant"
[ -n "$include" ] && set -- "$@" --include="$include"
if [ -n "$cache" ]; then
	mkdir -p "$cache"
	set -- "$@" --cache-dir="$(cd "$cache" && pwd)"
fi
echo "debootstrap $variant $suite from $mirror" >&2
debootstrap "$@" "$suite" "$root/rootfs" "$mirror" >&2

# What a container needs no copy of, and what would go stale in the image.
printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/rootfs/etc/apt/sources.list"
rm -rf "$root/rootfs/var/lib/apt/lists/"* "$root/rootfs/var/cache/apt/"*.bin \
	"$root/rootfs/var/cache/apt/archives/"*.deb "$root/rootfs/var/log/"*.log

created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tar --numeric-owner --xattrs -C "$root/rootfs" -c . | docker import \
	--change 'CMD ["/bin/bash"]' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change "LABEL org.opencontainers.image.created=$created org.opencontainers.image.version=$suite org.opencontainers.image.source=$mirror garrison.debootstrap.variant=$variant" \
	- "$tag" >/dev/null
echo "$tag"
