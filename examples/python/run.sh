#!/usr/bin/env bash
# python-pkcs11: quickstart.py signs, encrypts and wraps with session keys in the vHSM.
#
#   examples/python/run.sh                  # a fresh embedded vHSM (setup_vhsm.py)
#   examples/python/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd); py="$root/.venv/bin/python"
work=${FX_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/fx-python.XXXXXX")}; mkdir -p "$work"
if [ $# -ge 1 ]; then cfg=$(realpath "$1"); else cfg=$("$py" "$here/setup_vhsm.py" "$work/vhsm"); fi
export FXPKCS11_CFG=$cfg
"$py" "$here/quickstart.py" "${PIN:-safest}"
