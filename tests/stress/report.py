"""Write the figures of the last `make stress` run into docs/reliability.md.

Each part leaves one JSON file: {"part": str, "title": str, "rows": [[what, value], ...],
"passed": bool, "notes": [str, ...]}. Parts that did not run keep their previous section.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time

BEGIN, END = "<!-- figures:{} -->", "<!-- end figures:{} -->"


def section(result: dict) -> str:
    lines = [f"_{result['title']}_ — {'passed' if result.get('passed') else 'FAILED'}", "",
             "| what | figure |", "|---|---:|"]
    lines += [f"| {what} | {value} |" for what, value in result.get("rows", [])]
    lines += [""] + [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def main(results_dir: str, doc: str) -> int:
    text = open(doc, encoding="utf-8").read()
    stamp = time.strftime("%Y-%m-%d")
    cores = os.cpu_count()
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".json"):
            continue
        result = json.load(open(os.path.join(results_dir, name), encoding="utf-8"))
        part = result["part"]
        body = f"Last run {stamp} on {cores} cores ({platform.machine()}).\n\n" + section(result)
        begin, end = BEGIN.format(part), END.format(part)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        block = f"{begin}\n{body}{end}"
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        else:
            text = text.rstrip() + f"\n\n{block}\n"
    with open(doc, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
