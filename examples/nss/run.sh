#!/usr/bin/env bash
# NSS: libfxpkcs11.so added to an NSS database with modutil; certutil lists the token's
# certificates and keys.
#
#   examples/nss/run.sh                  # a fresh embedded vHSM (examples/python/setup_vhsm.py)
#   examples/nss/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../common.sh" nss "$@"
label=nss-rsa-$tag
cleanup() {
  for t in privkey pubkey cert; do
    pkcs11-tool --module "$lib" --login --pin "$PIN" --delete-object --type $t --id ${tag}01 >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

step "an RSA key pair in the vHSM and its self-signed certificate (made by OpenSSL's pkcs11 engine)"
p11 --login --pin "$PIN" --keypairgen --key-type rsa:2048 --label "$label" --id ${tag}01
sed "s|@MODULE@|$lib|" "$root/examples/openssl/openssl.cnf.in" > openssl.cnf
OPENSSL_CONF=$work/openssl.cnf openssl req -new -x509 -days 30 -subj "/CN=$label" -engine pkcs11 -keyform engine \
    -key "pkcs11:token=Futurex;object=$label;type=private;pin-value=$PIN" -outform DER -out cert.der 2>/dev/null
p11 --login --pin "$PIN" --write-object cert.der --type cert --id ${tag}01 --label "$label"

step "modutil -add Futurex"
mkdir -p nssdb
certutil -N -d sql:nssdb --empty-password
modutil -dbdir sql:nssdb -add Futurex -libfile "$lib" -force
modutil -dbdir sql:nssdb -list Futurex

step "certutil -L -h all / certutil -K -h Futurex (PIN from a password file)"
printf '%s\n' "$PIN" > pin.txt; chmod 600 pin.txt
certutil -d sql:nssdb -L -h all -f pin.txt | tee certs.txt
grep -q "Futurex:$label" certs.txt
certutil -d sql:nssdb -K -h Futurex -f pin.txt | tee keys.txt
grep -q "$label" keys.txt
certutil -d sql:nssdb -L -h Futurex -n "Futurex:$label" -f pin.txt > cert.txt
grep -m2 -E "Subject:|CN=" cert.txt
