#!/usr/bin/env bash
# make run: garrison up plus the example echo service registered in it.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDR=${GARRISON_ADDR:-127.0.0.1:8080}
ETCD=${GARRISON_ETCD_LISTEN:-http://127.0.0.1:2379}
./bin/garrison up --addr "$ADDR" --etcd-listen "$ETCD" &
garrison_pid=$!
trap 'kill $echo_pid 2>/dev/null; kill $garrison_pid 2>/dev/null; wait' EXIT INT TERM
for _ in $(seq 1 100); do
	curl -fsS "http://$ADDR/ping" >/dev/null 2>&1 && break
	sleep 0.2
done
./bin/echo -etcd "$ETCD" &
echo_pid=$!
sleep 1
echo "registry: curl http://$ADDR/api/v1/services"
curl -fsS "http://$ADDR/api/v1/services" && echo
wait $garrison_pid
