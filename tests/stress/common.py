"""What every stress part shares: the budget flag and the JSON result it leaves."""
from __future__ import annotations

import argparse
import json
from typing import Any


def parse_args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--budget", choices=("ci", "long"), default="ci")
    ap.add_argument("--out", help="write the JSON result here")
    return ap.parse_args()


def write_result(path: str | None, part: str, title: str, rows: list[tuple[str, Any]],
                 passed: bool, notes: list[str] | None = None) -> None:
    result = {"part": part, "title": title, "rows": [[w, str(v)] for w, v in rows],
              "passed": passed, "notes": notes or []}
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    for what, value in result["rows"]:
        print(f"{what}: {value}")
