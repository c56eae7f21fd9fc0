#!/usr/bin/env bash
# Runs p11bench against this module (embedded vHSM) and against SoftHSMv2 in one go, with
# the same ops and seconds, and prints one table with the ratios.
#   benchmarks/run.sh [--seconds S] [--ops a,b] [--threads T] [--write]
# --write also records the table in benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=2 ops="" threads=1 write=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --write) write=1; shift ;;
    *) echo "usage: benchmarks/run.sh [--seconds S] [--ops a,b] [--threads T] [--write]" >&2; exit 2 ;;
  esac
done
src=${P11BENCH_DIR:-$root/../shared/tools/p11bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -Wall -o "$work/p11bench" "$src/p11bench.c" -ldl -lpthread
args=(--seconds "$seconds" --threads "$threads" --json)
[ -n "$ops" ] && args+=(--ops "$ops")

# this module, embedded
"$root/.venv/bin/vhsm" --state "$work/state" -f benchmarks/bench-setup.fxcli >/dev/null
cat > "$work/fxpkcs11.cfg" <<CFG
<HSM>
  <SLOT> 0 </SLOT>
  <LABEL> Futurex </LABEL>
  <CRYPTO-OPR> bench </CRYPTO-OPR>
  <VHSM-STATE> $work/state </VHSM-STATE>
</HSM>
<LOG-FILE> $work/fxpkcs11.log </LOG-FILE>
<LOG-MODE> ERROR </LOG-MODE>
CFG
FXPKCS11_CFG="$work/fxpkcs11.cfg" "$work/p11bench" --module "$root/fxpkcs11/lib/libfxpkcs11.so" \
  --pin benchpin "${args[@]}" > "$work/ours.json"

# this module over TLS to a local `vhsm serve` on the same state
port=$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && openssl genrsa -out client.key 2048 2>/dev/null && \
  openssl req -new -key client.key -out client.csr -subj "/CN=bench" 2>/dev/null)
"$root/.venv/bin/vhsm" --state "$work/state" -f /dev/stdin >/dev/null <<ADMIN
login user -u Admin1 -p Admin1-Pass
login user -u Admin2 -p Admin2-Pass
tls-ports export -p "Excrypt Port" --ca-out $work/ca.pem
tls-ports client-cert -p "Excrypt Port" --csr $work/client.csr --out $work/client.pem
ADMIN
"$root/.venv/bin/vhsm" --state "$work/state" serve --port "$port" --admin-port -1 --log-level ERROR \
  --detach --pid-file "$work/serve.pid" --log-file "$work/serve.log"
for _ in $(seq 50); do [ -s "$work/serve.pid" ] && break; sleep 0.1; done
trap 'kill "$(cat "$work/serve.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/tls.cfg" <<CFG
<HSM>
  <SLOT> 0 </SLOT>
  <LABEL> Futurex </LABEL>
  <CRYPTO-OPR> bench </CRYPTO-OPR>
  <ADDRESS> 127.0.0.1 </ADDRESS>
  <PROD-PORT> $port </PROD-PORT>
  <PROD-TLS-CA> $work/ca.pem </PROD-TLS-CA>
  <PROD-TLS-CERT> $work/client.pem </PROD-TLS-CERT>
  <PROD-TLS-KEY> $work/client.key </PROD-TLS-KEY>
</HSM>
<LOG-FILE> $work/fxpkcs11-tls.log </LOG-FILE>
<LOG-MODE> ERROR </LOG-MODE>
CFG
FXPKCS11_CFG="$work/tls.cfg" "$work/p11bench" --module "$root/fxpkcs11/lib/libfxpkcs11.so" \
  --pin benchpin "${args[@]}" > "$work/tls.json"

# SoftHSMv2 on a throw-away token, as ../shared/tools/p11bench/softhsm-baseline.sh does
mkdir -p "$work/softhsm/tokens"
printf 'directories.tokendir = %s/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" \
  > "$work/softhsm/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm/softhsm2.conf
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
"$work/p11bench" --module /usr/lib/softhsm/libsofthsm2.so --pin 1234 "${args[@]}" > "$work/softhsm.json"

report=(--ours "$work/ours.json" --tls "$work/tls.json" --softhsm "$work/softhsm.json" --seconds "$seconds" --threads "$threads")
[ "$write" = 1 ] && report+=(--write benchmarks/README.md)
"$root/.venv/bin/python" benchmarks/report.py "${report[@]}"
