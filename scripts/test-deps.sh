#!/usr/bin/env bash
# Installs and starts what garrison's tests talk to, when it is missing:
# Debian's docker.io (with the daemon started host-networking only),
# etcd-server, etcd-client (etcdctl, used in the README and its test),
# prometheus, docker-registry and python3-aiosmtpd, and builds Nomad (cached under
# ~/.cache/garrison). Safe to run again.
set -euo pipefail

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null; then sudo "$@"; else echo "test-deps: need root for: $*" >&2; exit 1; fi
	else
		"$@"
	fi
}

missing=()
[ -x /usr/sbin/dockerd ] || missing+=(docker.io)
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
[ -x /usr/bin/etcdctl ] || missing+=(etcd-client)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
# The pipeline's tests: git repositories, the post-receive hook's curl, and
# a static busybox for build images made FROM scratch.
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
# Debian's busybox package also has a /bin/busybox, but linked
# dynamically: it cannot run in an image FROM scratch.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
# images/debootstrap.sh builds Debian base images (its test runs in CI).
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
# Notification mail is sent to aiosmtpd, a real SMTP server, run by
# Debian's python3 (internal/smtptest).
dpkg-query -W -f='${Status}' python3-aiosmtpd 2>/dev/null | grep -q 'ok installed' || missing+=(python3-aiosmtpd)
# The console's browser tests drive Debian's chromium, headless.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-deps: installing ${missing[*]}"
	need_root apt-get update -qq
	# Package scripts must not start daemons here: the tests start their own
	# on free loopback ports, and a Debian etcd on 2379 would stop
	# `garrison up`'s embedded one. RUNLEVEL=1 covers sysvinit scripts;
	# systemd units are started by deb-systemd-invoke, which only a
	# policy-rc.d refusing every start holds back (kept if one exists).
	policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		trap 'need_root rm -f "$policy"' EXIT
		printf '#!/bin/sh\n# garrison test-deps: no daemon starts while it installs\nexit 101\n' | need_root tee "$policy" >/dev/null
		need_root chmod 755 "$policy"
	fi
	need_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if [ -n "$policy" ]; then
		need_root rm -f "$policy"
		trap - EXIT
	fi
	# Nor at the next boot: the servers it installed stay off (Docker's
	# engine is wanted, and started below).
	if [ -d /run/systemd/system ]; then
		units=()
		for pkg in "${missing[@]}"; do
			case $pkg in
			etcd-server) units+=(etcd.service) ;;
			prometheus) units+=(prometheus.service) ;;
			docker-registry) units+=(docker-registry.service) ;;
			esac
		done
		[ ${#units[@]} -eq 0 ] || need_root systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
	fi
fi

docker_ok() { docker version >/dev/null 2>&1; }
if ! docker_ok; then
	echo "test-deps: starting dockerd --bridge=none --iptables=false"
	log=${TMPDIR:-/tmp}/garrison-dockerd.log
	need_root setsid nohup /usr/sbin/dockerd --bridge=none --iptables=false >"$log" 2>&1 < /dev/null &
	for _ in $(seq 1 120); do
		docker_ok && break
		sleep 0.5
	done
	if ! docker_ok; then
		echo "test-deps: dockerd did not come up; its log:" >&2
		tail -n 50 "$log" >&2
		exit 1
	fi
fi
# Nomad is built from the Go module proxy (minutes, once), then cached.
nomad=$("$(dirname "$0")/nomad-build.sh")
echo "test-deps: $("$nomad" version | head -n1)"
echo "test-deps: docker $(docker version --format '{{.Server.Version}}'), $(/usr/bin/etcd --version | head -n1), $(/usr/bin/prometheus --version 2>&1 | head -n1)"
