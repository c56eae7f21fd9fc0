#!/usr/bin/env bash
# OpenSSL through the pkcs11 engine with its keys in the vHSM: self-signed certificate, CSR,
# signatures, RSA decryption (PKCS #1 v1.5 and OAEP), a TLS server and a code signature.
#
#   examples/openssl/run.sh                  # a fresh embedded vHSM (examples/python/setup_vhsm.py)
#   examples/openssl/run.sh fxpkcs11.cfg     # the slot(s) of that configuration, e.g. `vhsm serve`
#
# PIN: $PIN (default safest). Work files: $FX_WORK (default a new temporary directory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../common.sh" openssl "$@"
rsa_id=${tag}01 ec_id=${tag}02 rsa=ossl-rsa-$tag ec=ossl-ec-$tag
cleanup() {
  for id in "$rsa_id" "$ec_id"; do for t in privkey pubkey; do
    pkcs11-tool --module "$lib" --login --pin "$PIN" --delete-object --type $t --id "$id" >/dev/null 2>&1 || true
  done; done
}
trap cleanup EXIT

sed "s|@MODULE@|$lib|" "$here/openssl.cnf.in" > openssl.cnf
export OPENSSL_CONF=$work/openssl.cnf
eng=(-engine pkcs11 -keyform engine)
rsa_uri="pkcs11:token=Futurex;object=$rsa;type=private;pin-value=$PIN"
ec_uri="pkcs11:token=Futurex;object=$ec;type=private;pin-value=$PIN"

step "key pairs generated in the vHSM (pkcs11-tool)"
p11 --login --pin "$PIN" --keypairgen --key-type rsa:2048 --label "$rsa" --id "$rsa_id"
p11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label "$ec" --id "$ec_id"
p11 --read-object --type pubkey --id "$rsa_id" --output-file rsa.pub.der
p11 --read-object --type pubkey --id "$ec_id" --output-file ec.pub.der
openssl pkey -pubin -inform DER -in rsa.pub.der -out rsa.pub.pem
openssl pkey -pubin -inform DER -in ec.pub.der -out ec.pub.pem
echo "$rsa: $rsa_uri"; echo "$ec: $ec_uri"

step "openssl req -new -x509: self-signed certificates"
for k in rsa ec; do
  uri=${k}_uri
  openssl req -new -x509 -days 30 -subj "/CN=$k.fxpkcs11.example" "${eng[@]}" -key "${!uri}" -out $k.crt
  openssl verify -CAfile $k.crt $k.crt
  [ "$(openssl x509 -in $k.crt -noout -pubkey)" = "$(cat $k.pub.pem)" ] && echo "$k.crt holds the vHSM public key"
done

step "openssl req -new: certificate signing requests"
for k in rsa ec; do
  uri=${k}_uri
  openssl req -new -subj "/CN=$k-csr.fxpkcs11.example" "${eng[@]}" -key "${!uri}" -out $k.csr
  openssl req -in $k.csr -noout -verify
done

step "openssl dgst -sha256 -sign, verified with the exported public key"
head -c 4096 /dev/urandom > data.bin
for k in rsa ec; do
  uri=${k}_uri
  openssl dgst -sha256 "${eng[@]}" -sign "${!uri}" -out data.$k.sig data.bin
  openssl dgst -sha256 -verify $k.pub.pem -signature data.$k.sig data.bin
done

step "openssl pkeyutl -decrypt: RSA PKCS #1 v1.5 and OAEP (SHA-1, SHA-256)"
echo "secret for the vHSM $tag" > secret.txt
openssl pkeyutl -encrypt -pubin -inkey rsa.pub.pem -in secret.txt -out secret.pkcs1
openssl pkeyutl -decrypt "${eng[@]}" -inkey "$rsa_uri" -in secret.pkcs1 -out secret.pkcs1.out
cmp secret.txt secret.pkcs1.out && echo "PKCS #1 v1.5: $(cat secret.pkcs1.out)"
for md in sha1 sha256; do
  oaep=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:$md -pkeyopt rsa_mgf1_md:$md)
  openssl pkeyutl -encrypt -pubin -inkey rsa.pub.pem "${oaep[@]}" -in secret.txt -out secret.oaep-$md
  openssl pkeyutl -decrypt "${eng[@]}" -inkey "$rsa_uri" "${oaep[@]}" -in secret.oaep-$md -out secret.oaep-$md.out
  cmp secret.txt secret.oaep-$md.out && echo "OAEP $md: $(cat secret.oaep-$md.out)"
done

step "openssl s_server with its key in the vHSM; openssl s_client handshakes and exchanges data"
# s_server -rev answers each line reversed and closes on CLOSE; RSA over TLS 1.3 (RSA-PSS), EC over TLS 1.2
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for k in rsa ec; do
  uri=${k}_uri; proto=$([ $k = rsa ] && echo -tls1_3 || echo -tls1_2)
  rm -f server.$k.out client.$k.out
  timeout 30 openssl s_server -accept "127.0.0.1:$port" -naccept 1 -rev "${eng[@]}" -key "${!uri}" -cert $k.crt \
      < /dev/null > server.$k.out 2>&1 &
  srv=$!
  for _ in $(seq 150); do grep -q ACCEPT server.$k.out 2>/dev/null && break; sleep 0.1; done
  printf 'hello over %s\nCLOSE\n' "$k" | timeout 20 openssl s_client -connect "127.0.0.1:$port" $proto \
      -CAfile $k.crt -verify_return_error -ign_eof > client.$k.out 2>&1
  wait $srv
  grep -q "Verify return code: 0 (ok)" client.$k.out
  reply=$([ $k = rsa ] && echo "asr revo olleh" || echo "ce revo olleh")   # the line, reversed
  grep -q "$reply" client.$k.out
  echo "$k: $(grep -m1 -o 'New, TLSv[0-9.]*, Cipher is [A-Z0-9_-]*' client.$k.out); server answered '$reply'"
done

step "code signing: the file's SHA-256 signed in the vHSM (as SignTool/Jenkins integrations do)"
head -c 100000 /dev/urandom > artifact.bin
openssl dgst -sha256 -binary artifact.bin > artifact.sha256
for k in rsa ec; do
  uri=${k}_uri
  openssl pkeyutl -sign "${eng[@]}" -inkey "${!uri}" -pkeyopt digest:sha256 -in artifact.sha256 -out artifact.$k.sig
  openssl pkeyutl -verify -pubin -inkey $k.pub.pem -pkeyopt digest:sha256 -in artifact.sha256 -sigfile artifact.$k.sig
  openssl dgst -sha256 -verify $k.pub.pem -signature artifact.$k.sig artifact.bin
done

step "done"
echo "work files: $work"
