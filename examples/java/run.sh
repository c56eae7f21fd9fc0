#!/usr/bin/env bash
# Java's SunPKCS11 provider on libfxpkcs11.so: key pairs with their certificates stored next to
# them (same CKA_ID), `keytool -list` of the token, and SignWithVhsm.java signing in the vHSM.
#
#   examples/java/run.sh                  # a fresh embedded vHSM (examples/python/setup_vhsm.py)
#   examples/java/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../common.sh" java "$@"
cleanup() {
  for id in ${tag}01 ${tag}02; do for t in privkey pubkey cert; do
    pkcs11-tool --module "$lib" --login --pin "$PIN" --delete-object --type $t --id "$id" >/dev/null 2>&1 || true
  done; done
}
trap cleanup EXIT

step "key pairs in the vHSM, and a certificate for each (same CKA_ID and label)"
# Java lists a key as a PrivateKeyEntry only with a certificate for its public key next to it;
# here a throwaway local CA issues one for the vHSM public key (openssl x509 -new -force_pubkey).
openssl req -new -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key -out ca.crt \
    -subj "/CN=Example CA" -days 30 2>/dev/null
for n in 01 02; do
  label=java-$([ $n = 01 ] && echo rsa || echo ec)-$tag
  kt=$([ $n = 01 ] && echo rsa:2048 || echo EC:prime256v1)
  p11 --login --pin "$PIN" --keypairgen --key-type $kt --label "$label" --id ${tag}$n
  p11 --read-object --type pubkey --id ${tag}$n --output-file $n.pub.der
  openssl pkey -pubin -inform DER -in $n.pub.der -out $n.pub.pem
  openssl x509 -new -CA ca.crt -CAkey ca.key -force_pubkey $n.pub.pem -subj "/CN=$label" -days 30 \
      -outform DER -out $n.crt.der
  p11 --login --pin "$PIN" --write-object $n.crt.der --type cert --id ${tag}$n --label "$label"
  echo "$label: key pair and certificate, id ${tag}$n"
done

cat > java.cfg <<CFG
name = Futurex
library = $lib
slot = 0
CFG
step "provider configuration"
cat java.cfg

step "keytool -list -storetype PKCS11"
keytool -list -keystore NONE -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 \
    -providerArg java.cfg -storepass "$PIN" | tee keytool.txt
grep -q "java-rsa-$tag, PrivateKeyEntry" keytool.txt
grep -q "java-ec-$tag, PrivateKeyEntry" keytool.txt

step "SignWithVhsm.java: sign in the vHSM through SunPKCS11, verify outside"
mkdir -p classes
javac -d classes "$here/SignWithVhsm.java"
java -cp classes SignWithVhsm java.cfg "$PIN" "java-rsa-$tag" "java-ec-$tag"
