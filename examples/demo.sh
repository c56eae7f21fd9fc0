#!/usr/bin/env bash
# The demo: a fresh embedded virtual Vectera Plus configured as the integration guide
# configures a real one, then pkcs11-tool generating and using keys inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo="${DEMO_DIR:-$root/.demo}"
vhsm="$root/.venv/bin/vhsm"
lib=$("$root/.venv/bin/python" -m fxpkcs11 module-path)
rm -rf "$demo"
mkdir -p "$demo"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. The library"
echo "$lib"

step "2. A factory-fresh vHSM, configured by the guide's FXCLI sequence (sections 6.1-6.6)"
run "$vhsm" --state "$demo/state" -f examples/vectera-setup.fxcli
run "$vhsm" --state "$demo/state" -f examples/demo-partition.fxcli
run "$vhsm" --state "$demo/state" role show --name vSEC_CMS

step "3. The library's configuration"
cat > "$demo/fxpkcs11.cfg" <<CFG
# Written by examples/demo.sh: one slot on the embedded virtual HSM.
<HSM>
  <SLOT>        0                 </SLOT>
  <LABEL>       Futurex           </LABEL>
  <CRYPTO-OPR>  crypto1           </CRYPTO-OPR>
  <VHSM-STATE>  $demo/state       </VHSM-STATE>
</HSM>
<LOG-FILE> $demo/fxpkcs11.log </LOG-FILE>
<LOG-MODE> INFO </LOG-MODE>
CFG
cat "$demo/fxpkcs11.cfg"
export FXPKCS11_CFG="$demo/fxpkcs11.cfg"

step "4. pkcs11-tool against it"
p11() { run pkcs11-tool --module "$lib" "$@"; }
p11 --list-slots
p11 --list-mechanisms | sed -n 1,12p  # sed reads it all: no SIGPIPE under pipefail
p11 --login --pin safest --keypairgen --key-type rsa:2048 --label demo-rsa --id 01
echo "data to sign, $(date)" > "$demo/data.txt"
p11 --login --pin safest --sign --mechanism SHA256-RSA-PKCS --label demo-rsa --input-file "$demo/data.txt" --output-file "$demo/data.sig"
p11 --login --pin safest --verify --mechanism SHA256-RSA-PKCS --label demo-rsa --input-file "$demo/data.txt" --signature-file "$demo/data.sig"
p11 --login --pin safest --list-objects

step "5. Point your own application at it"
cat <<MSG
  module:  $lib
  config:  export FXPKCS11_CFG=$demo/fxpkcs11.cfg
  PIN:     safest  (identity crypto1 in partition vSEC_CMS)
  URI:     pkcs11:token=Futurex;object=demo-rsa
  log:     $demo/fxpkcs11.log
  admin:   $vhsm --state $demo/state help
MSG
