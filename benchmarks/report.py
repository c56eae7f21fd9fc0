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


def table(ours: dict, softhsm: dict) -> str:
    rows = ["| op | ours ops/s | SoftHSMv2 ops/s | ours / SoftHSMv2 | ours µs/op |", "|---|---:|---:|---:|---:|"]
    for op, rate in ours["ops"].items():
        base = softhsm["ops"].get(op, 0.0)
        ratio = f"{rate / base:.2f}x" if base else "-"
        us = f"{1e6 / rate:.1f}" if rate else "FAILED"
        rows.append(f"| {op} | {rate:,.0f} | {base:,.0f} | {ratio} | {us} |")
    rows.append(f"| C_Initialize (ms) | {ours['initialize_ms']:.1f} | {softhsm['initialize_ms']:.1f} | | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--softhsm", required=True)
    ap.add_argument("--seconds", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--write")
    a = ap.parse_args()
    with open(a.ours) as f:
        ours = json.load(f)
    with open(a.softhsm) as f:
        softhsm = json.load(f)
    head = (f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), "
            f"{a.seconds} s per op, {a.threads} thread(s), embedded vHSM vs SoftHSMv2 in one run.")
    text = head + "\n\n" + table(ours, softhsm)
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
