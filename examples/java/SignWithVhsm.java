import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.util.Collections;

/**
 * Signs with a key in the vHSM through the SunPKCS11 provider and verifies the signature with
 * the certificate stored next to the key (by the JDK's own provider, outside the HSM).
 *
 *   java SignWithVhsm.java CONFIG PIN [ALIAS...]     (CONFIG: name = Futurex, library = ..., slot = 0)
 *
 * Without aliases every key entry of the token is used.
 */
public class SignWithVhsm {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: SignWithVhsm CONFIG PIN [ALIAS...]");
            System.exit(2);
        }
        Provider p11 = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p11);
        KeyStore ks = KeyStore.getInstance("PKCS11", p11);
        ks.load(null, args[1].toCharArray());

        java.util.List<String> aliases = new java.util.ArrayList<>();
        for (int i = 2; i < args.length; i++) aliases.add(args[i]);
        if (aliases.isEmpty()) {
            for (String a : Collections.list(ks.aliases())) if (ks.isKeyEntry(a)) aliases.add(a);
        }
        if (aliases.isEmpty()) throw new IllegalStateException("no key entries on the token");

        byte[] data = ("signed in the vHSM by " + p11.getName()).getBytes(StandardCharsets.UTF_8);
        for (String alias : aliases) {
            PrivateKey key = (PrivateKey) ks.getKey(alias, null);
            if (key == null) throw new IllegalStateException("no key entry " + alias);
            X509Certificate cert = (X509Certificate) ks.getCertificate(alias);
            String alg = key.getAlgorithm().equals("EC") ? "SHA256withECDSA" : "SHA256withRSA";

            Signature signer = Signature.getInstance(alg, p11);      // in the HSM
            signer.initSign(key);
            signer.update(data);
            byte[] sig = signer.sign();

            Signature verifier = Signature.getInstance(alg);          // outside it
            verifier.initVerify(cert.getPublicKey());
            verifier.update(data);
            if (!verifier.verify(sig)) throw new IllegalStateException(alias + ": signature does not verify");
            System.out.printf("%s: %s %s signature (%d bytes) verified with %s%n", alias, p11.getName(), alg,
                              sig.length, cert.getSubjectX500Principal().getName());
        }
        System.out.println("OK");
    }
}
