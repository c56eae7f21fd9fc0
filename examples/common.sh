# Sourced by the consumers' run.sh scripts: the slot to use and a few helpers.
#   source examples/common.sh NAME "$@"
# Sets root, py, work (a scratch folder, also the current directory), FXPKCS11_CFG (the
# configuration given as the first argument, else a fresh embedded vHSM), PIN, lib (the
# module), tag (unique labels and IDs: a served vHSM keeps its keys), step and p11.
name=$1; shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); py="$root/.venv/bin/python"
work=${FX_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/fx-$name.XXXXXX")}; mkdir -p "$work"; cd "$work"
if [ $# -ge 1 ]; then cfg=$(realpath "$1"); else cfg=$("$py" "$root/examples/python/setup_vhsm.py" "$work/vhsm"); fi
export FXPKCS11_CFG=$cfg
PIN=${PIN:-safest}
lib=$("$py" -m fxpkcs11 module-path)
tag=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
step() { printf '\n== %s\n' "$*"; }
# pkcs11-tool never needs the pkcs11 engine; with it loaded from OPENSSL_CONF in the same
# process, exporting an EC public key was seen to fail depending on memory layout.
p11() { env -u OPENSSL_CONF pkcs11-tool --module "$lib" "$@" >/dev/null; }
