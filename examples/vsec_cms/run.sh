#!/usr/bin/env bash
# The vSEC:CMS flow of the guide on a partition with exactly the guide's command list, then
# PKCS11Manager listing the four objects as in section 9.3.
#   examples/vsec_cms/run.sh [fxpkcs11.cfg]   (default: a fresh embedded vHSM set up by the guide's FXCLI)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
py="$root/.venv/bin/python"
if [ $# -ge 1 ]; then
  export FXPKCS11_CFG=$(realpath "$1")
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$root/.venv/bin/vhsm" --state "$work/state" -f examples/vectera-setup.fxcli >/dev/null
  printf '<HSM>\n <SLOT> 0 </SLOT>\n <LABEL> Futurex </LABEL>\n <CRYPTO-OPR> crypto1 </CRYPTO-OPR>\n <VHSM-STATE> %s </VHSM-STATE>\n</HSM>\n<LOG-FILE> %s/fxpkcs11.log </LOG-FILE>\n' \
    "$work/state" "$work" > "$work/fxpkcs11.cfg"
  export FXPKCS11_CFG=$work/fxpkcs11.cfg
fi
pin=${VSEC_PIN:-safest}
"$py" examples/vsec_cms/keystore.py --pin "$pin"
printf '8\n1\n%s\n3\n1\n0\n' "$pin" | "$root/.venv/bin/PKCS11Manager" | sed -n '/Total number of found objects/,/^Main Menu/p' | sed '$d'
