#!/usr/bin/env bash
# GnuTLS and p11-kit: `p11tool --provider libfxpkcs11.so` lists the token and its objects; then
# the module file is installed for the user, `p11-kit list-modules` shows it, pkcs11-tool reaches
# the Futurex token through p11-kit-proxy.so and p11tool finds it without --provider.
#
#   examples/p11-kit/run.sh                  # a fresh embedded vHSM (examples/python/setup_vhsm.py)
#   examples/p11-kit/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
#
# The module file goes to a temporary XDG_CONFIG_HOME unless FX_P11KIT_INSTALL=user
# (then to ~/.config/pkcs11/modules, where it stays).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../common.sh" p11kit "$@"
proxy=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
cleanup() {
  for t in privkey pubkey; do
    pkcs11-tool --module "$lib" --login --pin "$PIN" --delete-object --type $t --id ${tag}01 >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

step "an EC key pair in the vHSM"
pkcs11-tool --module "$lib" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label "p11tool-$tag" \
    --id ${tag}01 >/dev/null

step "p11tool --provider: tokens, public objects, and all objects after login"
p11tool --provider "$lib" --list-tokens | tee tokens.txt
grep -q "Label: Futurex" tokens.txt
p11tool --provider "$lib" --list-all "pkcs11:token=Futurex" | tee public.txt
grep -q "object=p11tool-$tag;type=public" public.txt
GNUTLS_PIN=$PIN p11tool --provider "$lib" --login --list-all "pkcs11:token=Futurex;object=p11tool-$tag" | tee all.txt
grep -q "object=p11tool-$tag;type=private" all.txt
[ "${FX_P11KIT_INSTALL:-}" = user ] || export XDG_CONFIG_HOME="$work/config"

step "install the module file (user scope)"
"$here/install.sh"
cat "${XDG_CONFIG_HOME:-$HOME/.config}/pkcs11/modules/fxpkcs11.module"

# p11-kit skips user configuration when the program runs as root ("skipping user config in
# program running as root"): as root, run the consumers as uid 1000 in a user namespace.
as_user=()
if [ "$(id -u)" -eq 0 ]; then as_user=(unshare --user --map-user=1000 --map-group=1000); fi

step "p11-kit list-modules"
"${as_user[@]}" p11-kit list-modules > modules.txt
sed -n '/^fxpkcs11:/,/^[^ ]/p' modules.txt
grep -q "^fxpkcs11: " modules.txt

step "pkcs11-tool through p11-kit-proxy.so"
"${as_user[@]}" pkcs11-tool --module "$proxy" -L > slots.txt
cat slots.txt
grep -Eq "token label +: Futurex" slots.txt

step "p11tool without --provider (p11-kit's registered modules)"
"${as_user[@]}" p11tool --list-token-urls | tee urls.txt
grep -q "token=Futurex" urls.txt
