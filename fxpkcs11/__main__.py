"""python -m fxpkcs11 module-path | build"""
from __future__ import annotations

import argparse
import sys

from fxpkcs11.paths import module_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fxpkcs11")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("module-path", help="print the absolute path of libfxpkcs11.so")
    a = ap.parse_args(argv)
    if a.cmd == "module-path":
        path = module_path()
        if path is None:
            print("fxpkcs11: libfxpkcs11.so is not built; run `make build`", file=sys.stderr)
            return 1
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
