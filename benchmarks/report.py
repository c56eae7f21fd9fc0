"""Turns p11bench --json outputs into the comparison table (and records it)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(ours: dict, tls: dict | None, softhsm: dict) -> str:
    head = "| op | embedded ops/s | over TLS ops/s | SoftHSMv2 ops/s | embedded / SoftHSMv2 | TLS / SoftHSMv2 |"
    rows = [head, "|---|---:|---:|---:|---:|---:|"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if a and b else "-"
    for op, rate in ours["ops"].items():
        base = softhsm["ops"].get(op, 0.0)
        over = tls["ops"].get(op, 0.0) if tls else 0.0
        rows.append(f"| {op} | {rate:,.0f} | {over:,.0f} | {base:,.0f} | {ratio(rate, base)} | {ratio(over, base)} |")
    init = f"| C_Initialize (ms) | {ours['initialize_ms']:.1f} | {tls['initialize_ms'] if tls else 0:.1f} | " \
           f"{softhsm['initialize_ms']:.1f} | | |"
    rows.append(init)
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--tls")
    ap.add_argument("--softhsm", required=True)
    ap.add_argument("--seconds", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--write")
    a = ap.parse_args()
    with open(a.ours) as f:
        ours = json.load(f)
    with open(a.softhsm) as f:
        softhsm = json.load(f)
    tls = None
    if a.tls:
        with open(a.tls) as f:
            tls = json.load(f)
    head = (f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), "
            f"{a.seconds} s per op, {a.threads} thread(s): embedded vHSM, vHSM over TLS (`vhsm serve` on "
            f"loopback) and SoftHSMv2, in one run.")
    text = head + "\n\n" + table(ours, tls, softhsm)
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
