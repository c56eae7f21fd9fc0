#!/usr/bin/env bash
# OpenSSH: `ssh-keygen -D libfxpkcs11.so` lists the SSH public keys of the token's RSA and EC
# keys (without a PIN: the public halves are public objects, CKA_PRIVATE false), and they equal
# the public keys exported with pkcs11-tool and converted by ssh-keygen -i.
#
#   examples/ssh/run.sh                  # a fresh embedded vHSM (examples/python/setup_vhsm.py)
#   examples/ssh/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
#
# Use the keys with: ssh -I "$(.venv/bin/python -m fxpkcs11 module-path)" user@host
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../common.sh" ssh "$@"
cleanup() {
  for id in ${tag}01 ${tag}02; do for t in privkey pubkey; do
    pkcs11-tool --module "$lib" --login --pin "$PIN" --delete-object --type $t --id "$id" >/dev/null 2>&1 || true
  done; done
}
trap cleanup EXIT

step "an RSA and an EC key pair in the vHSM"
p11 --login --pin "$PIN" --keypairgen --key-type rsa:2048 --label "ssh-rsa-$tag" --id ${tag}01 --usage-sign
p11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label "ssh-ec-$tag" --id ${tag}02 --usage-sign

step "ssh-keygen -D (no PIN)"
ssh-keygen -D "$lib" > listed.pub
cat listed.pub

step "the same keys, exported with pkcs11-tool and converted with ssh-keygen -i"
for n in 01 02; do
  p11 --read-object --type pubkey --id ${tag}$n --output-file $n.der
  openssl pkey -pubin -inform DER -in $n.der -out $n.pem
  ssh-keygen -i -m PKCS8 -f $n.pem > $n.ssh.pub
  key=$(cut -d' ' -f1,2 $n.ssh.pub)
  grep -qF "$key" listed.pub && echo "found: ${key:0:60}..."
done
