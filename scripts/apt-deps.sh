#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo drive (only those missing).
set -euo pipefail
packages=(opensc softhsm2 gnutls-bin libengine-pkcs11-openssl openssl gcc make libnss3-tools p11-kit openssh-client openjdk-17-jdk-headless postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
