"""Turns p11bench --json outputs (and the ceiling) into the report, checks the goals, and
records it in benchmarks/README.md with --write."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re

# The performance goals: ratio to SoftHSMv2, embedded and over TLS (None: no goal).
GOALS: dict[str, tuple[float | None, float | None]] = {
    "rsa2048-sign": (1.5, 1.2), "ecdsa-p256-sign": (1.2, 0.6), "rsa2048-verify": (1.0, 0.5),
    "aes256-cbc-64k": (0.9, 0.5), "find-by-label": (5.0, 2.0), "random32": (0.33, None),
    "sha256-1k": (0.33, None), "aes256-cbc-16": (0.33, None), "hmac-sha256-64": (0.33, None),
    "des3-cbc-64": (0.33, None),
}
OVERHEAD_OP, OVERHEAD_GOALS = "aes256-cbc-16", (15.0, 80.0)  # µs over the ceiling
INIT_GOAL_MS, OPEN_CLOSE_GOAL_US = 150.0, 20.0
THREADS_GOAL, WORKERS_GOAL, FIND_GOAL_MS, RSS_GOAL_MB = 1.4, 1.7, 1.0, 300.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load(paths: str | None) -> dict | None:
    """One p11bench --json result, or the best of several (comma-separated): the highest
    ops/s of each op and the shortest C_Initialize."""
    if not paths:
        return None
    runs = []
    for path in paths.split(","):
        with open(path) as f:
            runs.append(json.load(f))
    best = dict(runs[0], ops=dict(runs[0]["ops"]))
    for run in runs[1:]:
        for op, rate in run["ops"].items():
            best["ops"][op] = max(rate, best["ops"].get(op, 0.0))
        if "initialize_ms" in run:
            best["initialize_ms"] = min(run["initialize_ms"], best.get("initialize_ms", run["initialize_ms"]))
        for floor in ("tls_round_trip", "tls_round_trip_polling"):
            if floor in run:
                best[floor] = max(run[floor], best.get(floor, 0.0))
    return best


def mark(value: float, goal: float | None, higher: bool = True) -> str:
    if goal is None:
        return ""
    ok = value >= goal if higher else value <= goal
    return " ✓" if ok else f" ✗ (goal {'≥' if higher else '≤'} {goal:g})"


def overhead_us(rate: float, ceiling: float | None) -> float | None:
    if not rate or not ceiling:
        return None
    return 1e6 / rate - 1e6 / ceiling


def main_table(ours: dict, tls: dict | None, softhsm: dict, ceiling: dict | None) -> list[str]:
    rows = ["| op | embedded ops/s | over TLS ops/s | SoftHSMv2 ops/s | ceiling ops/s | embedded / SoftHSMv2 "
            "| TLS / SoftHSMv2 | embedded overhead µs | TLS overhead µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ceil_ops = (ceiling or {}).get("ops", {})
    for op, rate in ours["ops"].items():
        base = softhsm["ops"].get(op, 0.0)
        over = tls["ops"].get(op, 0.0) if tls else 0.0
        top = ceil_ops.get(op)
        goal_e, goal_t = GOALS.get(op, (None, None))
        r_e = f"{rate / base:.2f}x{mark(rate / base, goal_e)}" if rate and base else "-"
        r_t = f"{over / base:.2f}x{mark(over / base, goal_t)}" if over and base else "-"
        oe, ot = overhead_us(rate, top), overhead_us(over, top)
        ge, gt = OVERHEAD_GOALS if op == OVERHEAD_OP else (None, None)
        s_oe = f"{oe:.1f}{mark(oe, ge, higher=False)}" if oe is not None else ""
        s_ot = f"{ot:.1f}{mark(ot, gt, higher=False)}" if ot is not None else ""
        if op == "open-close":
            s_oe = f"{1e6 / rate:.1f} per open+close{mark(1e6 / rate, OPEN_CLOSE_GOAL_US, higher=False)}"
        rows.append(f"| {op} | {rate:,.0f} | {over:,.0f} | {base:,.0f} | {f'{top:,.0f}' if top else ''} "
                    f"| {r_e} | {r_t} | {s_oe} | {s_ot} |")
    init = ours["initialize_ms"]
    rows.append(f"| C_Initialize (ms) | {init:.1f}{mark(init, INIT_GOAL_MS, higher=False)} | "
                f"{tls['initialize_ms'] if tls else 0:.1f} | {softhsm['initialize_ms']:.1f} | | | | | |")
    return rows


def scaling(a: argparse.Namespace, ceiling: dict | None) -> list[str]:
    rows = ["| figure | value |", "|---|---:|"]
    if ceiling and ceiling.get("tls_round_trip"):
        rows.append(f"| TLS round trip floor (Python echo, loopback, blocking receives) | "
                    f"{1e6 / ceiling['tls_round_trip']:.1f} µs |")
    if ceiling and ceiling.get("tls_round_trip_polling"):
        rows.append(f"| TLS round trip floor (Python echo, loopback, polling first as our links do) | "
                    f"{1e6 / ceiling['tls_round_trip_polling']:.1f} µs |")
    t1, t2 = load(a.threads1), load(a.threads2)
    if t1 and t2:
        r1, r2 = t1["ops"]["rsa2048-sign"], t2["ops"]["rsa2048-sign"]
        rows.append(f"| rsa2048-sign embedded, 1 → 2 client threads | {r1:,.0f} → {r2:,.0f} ops/s = "
                    f"{r2 / r1:.2f}x{mark(r2 / r1, THREADS_GOAL)} |")
    w1, w2 = load(a.workers1), load(a.workers2)
    if w1 and w2:
        for op, r1 in w1["ops"].items():
            r2 = w2["ops"].get(op, 0.0)
            goal = WORKERS_GOAL if op == "rsa2048-sign" else None
            rows.append(f"| {op} over TLS, 2 client threads, 1 → 2 workers | {r1:,.0f} → {r2:,.0f} ops/s = "
                        f"{r2 / r1:.2f}x{mark(r2 / r1, goal)} |")
    big, big_tls = load(a.big), load(a.big_tls)
    if big:
        n = f"{int(a.objects):,}"
        ms = 1e3 / big["ops"]["find-by-label"]
        rows.append(f"| find-by-label embedded, {n} token objects | {ms:.3f} ms{mark(ms, FIND_GOAL_MS, False)} |")
        rows.append(f"| C_Initialize embedded, {n} token objects | {big['initialize_ms']:.1f} ms"
                    f"{mark(big['initialize_ms'], INIT_GOAL_MS, False)} |")
    if big_tls:
        ms = 1e3 / big_tls["ops"]["find-by-label"]
        rows.append(f"| find-by-label over TLS, {int(a.objects):,} token objects | {ms:.3f} ms |")
    if a.big_rss_kb:
        mb = int(a.big_rss_kb) / 1024
        rows.append(f"| `vhsm serve` peak resident memory, {int(a.objects):,} token objects | {mb:.0f} MB"
                    f"{mark(mb, RSS_GOAL_MB, False)} |")
    return rows if len(rows) > 2 else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--tls")
    ap.add_argument("--softhsm", required=True)
    ap.add_argument("--ceiling")
    ap.add_argument("--seconds", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--repeat", default="1")
    ap.add_argument("--threads1")
    ap.add_argument("--threads2")
    ap.add_argument("--workers1")
    ap.add_argument("--workers2")
    ap.add_argument("--objects", default="0")
    ap.add_argument("--big")
    ap.add_argument("--big-tls")
    ap.add_argument("--big-rss-kb")
    ap.add_argument("--write")
    a = ap.parse_args()
    ours, softhsm, tls, ceiling = load(a.ours), load(a.softhsm), load(a.tls), load(a.ceiling)
    head = (f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), "
            f"{a.seconds} s per op, {a.threads} thread(s): embedded vHSM, vHSM over TLS (`vhsm serve` on "
            f"loopback), SoftHSMv2 and the ceiling (`cryptography` called directly), in one run; each run "
            f"{a.repeat} times, interleaved, best figure kept. "
            f"Overhead = 1/ours − 1/ceiling per op; ✓/✗ mark the goals.")
    parts = [head, "", "\n".join(main_table(ours, tls, softhsm, ceiling))]
    extra = scaling(a, ceiling)
    if extra:
        parts += ["", "\n".join(extra)]
    text = "\n".join(parts)
    print(text)
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        block = f"<!-- results -->\n{text}\n<!-- end results -->"
        doc = re.sub(r"<!-- results -->.*<!-- end results -->", lambda _: block, doc, flags=re.S)
        with open(a.write, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
