#!/usr/bin/env bash
# Registers libfxpkcs11.so with p11-kit for the current user:
#   examples/p11-kit/install.sh        -> ${XDG_CONFIG_HOME:-~/.config}/pkcs11/modules/fxpkcs11.module
# p11-kit ignores user configuration in programs running as root: as root, copy the file to
# /etc/pkcs11/modules/ instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
lib=${FXPKCS11_MODULE:-$("$root/.venv/bin/python" -m fxpkcs11 module-path)}
[ -f "$lib" ] || { echo "libfxpkcs11.so is not built (make build)" >&2; exit 1; }
dir="${XDG_CONFIG_HOME:-$HOME/.config}/pkcs11/modules"
mkdir -p "$dir"
sed "s|@MODULE@|$lib|" "$here/fxpkcs11.module" > "$dir/fxpkcs11.module"
echo "$dir/fxpkcs11.module"
