#!/usr/bin/env bash
# rsa2048-sign throughput of a cluster with 1, 2 and 3 `vhsm serve` nodes on this machine,
# sharing one PostgreSQL (started from Debian's package in a temporary directory, as the
# tests do). The library balances over the nodes (<FX-LOAD-BALANCE> YES); p11bench runs
# --threads sessions (default 3). Prints a Markdown table (docs/cluster.md keeps the figures).
#   benchmarks/cluster.sh [--seconds S] [--threads T]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=5 threads=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "usage: benchmarks/cluster.sh [--seconds S] [--threads T]" >&2; exit 2 ;;
  esac
done
export P11BENCH_DIR=${P11BENCH_DIR:-$(pwd)/../shared/tools/p11bench}
exec .venv/bin/python - "$seconds" "$threads" <<'PY'
import json, os, subprocess, sys, tempfile
sys.path.insert(0, "tests")
from net_support import ServerProcess, hsm_block, write_net_config
from pg_support import PgServer
from support import LIB, PIN, build_library, child_env
from test_cluster import first_node_setup, join_node

seconds, threads = sys.argv[1], sys.argv[2]
build_library()
pg = PgServer().setup()
if pg.problem:
    sys.exit(f"cluster.sh: PostgreSQL cannot start: {pg.problem}")
base = tempfile.mkdtemp(prefix="vhsm-cluster-bench-")
nodes = []
try:
    states = [os.path.join(base, f"node{i}") for i in (1, 2, 3)]
    cards = os.path.join(base, "cards")
    subprocess.run([".venv/bin/vhsm", "--state", states[0], "cluster", "init", "--store", pg.url()],
                   check=True, stdout=subprocess.DEVNULL)
    first_node_setup(states[0], base, cards)
    for s in states[1:]:
        join_node(s, base, pg.url(), cards)
    nodes = [ServerProcess(s, base, name=f"node{i}", args=("--log-level", "INFO")).start()
             for i, s in enumerate(states, 1)]
    exe = os.path.join(base, "p11bench")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(os.environ["P11BENCH_DIR"], "p11bench.c"), "-ldl",
                    "-lpthread"], check=True)
    tls = os.path.join(base, "tls")
    rows = []
    for count in (1, 2, 3):
        cfg = write_net_config(os.path.join(base, f"n{count}.cfg"), hsm_block(
            [n.address for n in nodes[:count]], load_balance=True, ca=[os.path.join(tls, "TlsCa.pem")],
            cert=os.path.join(tls, "client.pem"), key=os.path.join(tls, "client.key")), log_mode="ERROR")
        p = subprocess.run([exe, "--module", LIB, "--pin", PIN, "--slot", "0", "--threads", threads,
                            "--seconds", seconds, "--ops", "rsa2048-sign", "--json"], env=child_env(cfg),
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            sys.exit(f"p11bench failed with {count} node(s):\n{p.stderr}")
        rows.append((count, json.loads(p.stdout)["ops"]["rsa2048-sign"]))
    print(f"rsa2048-sign, {threads} client threads, {seconds} s, {os.cpu_count()} cores\n")
    print("| nodes | signatures/s | vs 1 node |\n|---|---:|---:|")
    for count, rate in rows:
        print(f"| {count} | {rate:,.1f} | {rate / rows[0][1]:.2f}x |")
finally:
    for n in nodes:
        n.stop()
    pg.cleanup()
    subprocess.run(["rm", "-rf", base])
PY
