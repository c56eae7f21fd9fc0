"""python-pkcs11 on libfxpkcs11.so: sign, encrypt and wrap (session keys, nothing is left behind).

    FXPKCS11_CFG=fxpkcs11.cfg .venv/bin/python examples/python/quickstart.py [PIN]
"""
import os, sys
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from fxpkcs11.paths import module_path

lib = pkcs11.lib(os.environ.get("FXPKCS11_MODULE") or module_path())
with lib.get_token(token_label="Futurex").open(rw=True, user_pin=sys.argv[1] if len(sys.argv) > 1 else "safest") as s:
    pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=False)                       # sign
    sig = priv.sign(b"hello", mechanism=Mechanism.SHA256_RSA_PKCS)
    assert pub.verify(b"hello", sig, mechanism=Mechanism.SHA256_RSA_PKCS)
    aes = s.generate_key(KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True})  # encrypt
    iv = s.generate_random(128)
    assert aes.decrypt(aes.encrypt(b"secret data", mechanism_param=iv), mechanism_param=iv) == b"secret data"
    kek = s.generate_key(KeyType.AES, 256, store=False, template={                         # wrap: a KEK that
        Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.ENCRYPT: False, Attribute.DECRYPT: False})  # cannot decrypt
    blob = kek.wrap_key(aes, mechanism=Mechanism.AES_KEY_WRAP)
    back = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.AES_KEY_WRAP, store=False)
    assert back.decrypt(aes.encrypt(b"again", mechanism_param=iv), mechanism_param=iv) == b"again"
    print(f"signed ({len(sig)} bytes), encrypted, wrapped ({len(blob)} bytes): OK")
