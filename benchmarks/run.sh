#!/usr/bin/env bash
# Runs p11bench against this module (embedded vHSM, and over TLS to a local `vhsm serve`) and
# against SoftHSMv2 in one go, with the same ops and seconds; measures the ceiling (the same
# crypto called directly on `cryptography`); then the scaling figures: two client threads,
# `vhsm serve --workers 2`, and a partition holding 100,000 token objects. Prints one report.
#   benchmarks/run.sh [--seconds S] [--repeat R] [--ops a,b] [--threads T] [--objects N] [--table-only] [--write]
# Each of the three is run R times, interleaved, and the best figure of each op is kept: this
# machine class is noisy, and a slow moment hits one run, not all.
# --write also records the report in benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=$root/.venv/bin/python
seconds=2 repeat=3 ops="" threads=1 write=0 objects=100000 extras=1
usage() { echo "usage: benchmarks/run.sh [--seconds S] [--repeat R] [--ops a,b] [--threads T] [--objects N] [--table-only] [--write]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --repeat) [ $# -ge 2 ] || usage; repeat=$2; shift 2 ;;
    --ops) [ $# -ge 2 ] || usage; ops=$2; shift 2 ;;
    --threads) [ $# -ge 2 ] || usage; threads=$2; shift 2 ;;
    --objects) [ $# -ge 2 ] || usage; objects=$2; shift 2 ;;
    --table-only) extras=0; shift ;;
    --write) write=1; shift ;;
    *) usage ;;
  esac
done
src=${P11BENCH_DIR:-$root/../shared/tools/p11bench}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cc -O2 -Wall -o "$work/p11bench" "$src/p11bench.c" -ldl -lpthread
bench() {  # bench CFG OUT [p11bench args...]
  local cfg=$1 out=$2; shift 2
  FXPKCS11_CFG="$cfg" "$work/p11bench" --module "$root/fxpkcs11/lib/libfxpkcs11.so" --pin benchpin --json "$@" > "$out"
}
args=(--seconds "$seconds" --threads "$threads")
[ -n "$ops" ] && args+=(--ops "$ops")

# A partition for the benchmark, its embedded config, and a client identity for TLS.
"$root/.venv/bin/vhsm" --state "$work/state" -f benchmarks/bench-setup.fxcli >/dev/null
(cd "$work" && openssl genrsa -out client.key 2048 2>/dev/null && \
  openssl req -new -key client.key -out client.csr -subj "/CN=bench" 2>/dev/null)
"$root/.venv/bin/vhsm" --state "$work/state" -f /dev/stdin >/dev/null <<ADMIN
login user -u Admin1 -p Admin1-Pass
login user -u Admin2 -p Admin2-Pass
tls-ports export -p "Excrypt Port" --ca-out $work/ca.pem
tls-ports client-cert -p "Excrypt Port" --csr $work/client.csr --out $work/client.pem
ADMIN
embedded_cfg() {  # embedded_cfg FILE STATE
  cat > "$1" <<CFG
<HSM>
  <SLOT> 0 </SLOT>
  <LABEL> Futurex </LABEL>
  <CRYPTO-OPR> bench </CRYPTO-OPR>
  <VHSM-STATE> $2 </VHSM-STATE>
</HSM>
<LOG-FILE> $work/fxpkcs11.log </LOG-FILE>
<LOG-MODE> ERROR </LOG-MODE>
CFG
}
tls_cfg() {  # tls_cfg FILE PORT
  cat > "$1" <<CFG
<HSM>
  <SLOT> 0 </SLOT>
  <LABEL> Futurex </LABEL>
  <CRYPTO-OPR> bench </CRYPTO-OPR>
  <ADDRESS> 127.0.0.1 </ADDRESS>
  <PROD-PORT> $2 </PROD-PORT>
  <PROD-TLS-CA> $work/ca.pem </PROD-TLS-CA>
  <PROD-TLS-CERT> $work/client.pem </PROD-TLS-CERT>
  <PROD-TLS-KEY> $work/client.key </PROD-TLS-KEY>
</HSM>
<LOG-FILE> $work/fxpkcs11-tls.log </LOG-FILE>
<LOG-MODE> ERROR </LOG-MODE>
CFG
}
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve() {  # serve NAME STATE [vhsm serve args...]: starts a server, prints its port
  local name=$1 state=$2 port; shift 2
  port=$(free_port)
  "$root/.venv/bin/vhsm" --state "$state" serve --port "$port" --admin-port -1 --log-level ERROR \
    --detach --pid-file "$work/$name.pid" --log-file "$work/$name.log" "$@"
  for _ in $(seq 100); do [ -s "$work/$name.pid" ] && break; sleep 0.1; done
  pids+=("$(cat "$work/$name.pid")")
  echo "$port"
}
stop() { kill "$(cat "$work/$1.pid")" 2>/dev/null || true; sleep 0.5; }

embedded_cfg "$work/fxpkcs11.cfg" "$work/state"
port=$(serve tls "$work/state")
tls_cfg "$work/tls.cfg" "$port"
# SoftHSMv2 on a throw-away token, as ../shared/tools/p11bench/softhsm-baseline.sh does
mkdir -p "$work/softhsm/tokens"
printf 'directories.tokendir = %s/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" \
  > "$work/softhsm/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm/softhsm2.conf
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
ceiling_ops=${ops:-rsa2048-sign,rsa2048-verify,ecdsa-p256-sign,aes256-cbc-16,aes256-cbc-64k,hmac-sha256-64}
ours="" tls="" softhsm="" ceiling=""
for i in $(seq "$repeat"); do
  bench "$work/fxpkcs11.cfg" "$work/ours.$i.json" "${args[@]}"
  "$work/p11bench" --module /usr/lib/softhsm/libsofthsm2.so --pin 1234 --json "${args[@]}" > "$work/softhsm.$i.json"
  bench "$work/tls.cfg" "$work/tls.$i.json" "${args[@]}"
  "$py" benchmarks/ceiling.py --seconds "$seconds" --ops "$ceiling_ops" > "$work/ceiling.$i.json"
  ours+="${ours:+,}$work/ours.$i.json" softhsm+="${softhsm:+,}$work/softhsm.$i.json"
  tls+="${tls:+,}$work/tls.$i.json" ceiling+="${ceiling:+,}$work/ceiling.$i.json"
done
stop tls
report=(--ours "$ours" --tls "$tls" --softhsm "$softhsm" --ceiling "$ceiling" --repeat "$repeat"
        --seconds "$seconds" --threads "$threads")

if [ "$extras" = 1 ]; then
  # Threads: the same process, two sessions signing at once.
  t1="" t2=""
  for i in $(seq "$repeat"); do
    bench "$work/fxpkcs11.cfg" "$work/threads1.$i.json" --seconds "$seconds" --threads 1 --ops rsa2048-sign
    bench "$work/fxpkcs11.cfg" "$work/threads2.$i.json" --seconds "$seconds" --threads 2 --ops rsa2048-sign
    t1+="${t1:+,}$work/threads1.$i.json" t2+="${t2:+,}$work/threads2.$i.json"
  done
  report+=(--threads1 "$t1" --threads2 "$t2")
  # Cores: one server process against two workers, two client threads each time.
  if "$root/.venv/bin/vhsm" serve --help 2>&1 | grep -q -- --workers; then
    for n in 1 2; do
      port=$(serve "w$n" "$work/state" --workers "$n")
      tls_cfg "$work/w$n.cfg" "$port"
      bench "$work/w$n.cfg" "$work/workers$n.json" --seconds "$seconds" --threads 2 \
        --ops rsa2048-sign,ecdsa-p256-sign,random32
      stop "w$n"
    done
    report+=(--workers1 "$work/workers1.json" --workers2 "$work/workers2.json")
  fi
  # Objects: a partition holding N token objects.
  "$root/.venv/bin/vhsm" --state "$work/big" -f benchmarks/bench-setup.fxcli >/dev/null
  "$py" benchmarks/populate.py "$work/big" Bench "$objects"
  embedded_cfg "$work/big.cfg" "$work/big"
  big=""
  for i in $(seq "$repeat"); do
    bench "$work/big.cfg" "$work/big.$i.json" --seconds "$seconds" --ops find-by-label
    big+="${big:+,}$work/big.$i.json"
  done
  "$root/.venv/bin/vhsm" --state "$work/big" -f /dev/stdin >/dev/null <<ADMIN
login user -u Admin1 -p Admin1-Pass
login user -u Admin2 -p Admin2-Pass
tls-ports export -p "Excrypt Port" --ca-out $work/big-ca.pem
tls-ports client-cert -p "Excrypt Port" --csr $work/client.csr --out $work/big-client.pem
ADMIN
  port=$(serve big "$work/big")
  tls_cfg "$work/big-tls.cfg" "$port"
  sed -i "s#$work/ca.pem#$work/big-ca.pem#; s#$work/client.pem#$work/big-client.pem#" "$work/big-tls.cfg"
  bench "$work/big-tls.cfg" "$work/big-tls.json" --seconds "$seconds" --ops find-by-label
  rss=$(awk '/VmHWM/{print $2}' "/proc/$(cat "$work/big.pid")/status")
  stop big
  report+=(--objects "$objects" --big "$big" --big-tls "$work/big-tls.json" --big-rss-kb "$rss")
fi

[ "$write" = 1 ] && report+=(--write benchmarks/README.md)
"$py" benchmarks/report.py "${report[@]}"
