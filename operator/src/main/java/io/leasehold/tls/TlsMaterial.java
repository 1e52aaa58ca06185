package io.leasehold.tls;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.List;
import java.util.Optional;

/**
 * What the backend serves HTTPS with: its certificate chain and private key (PEM), and the CA that
 * signed the chain, which runners must trust (published for them when known).
 *
 * @param certificateChain the serving certificate first, then any intermediates
 * @param privateKey the serving certificate's private key
 * @param ca the CA certificate(s) runners verify the chain with, when known
 */
public record TlsMaterial(String certificateChain, String privateKey, Optional<String> ca) {

  /**
   * Checks that the chain and key can be read and belong together, and that the certificate is
   * valid now; {@code source} names where they came from in the error.
   *
   * @throws IllegalArgumentException saying what is wrong
   */
  public TlsMaterial validated(String source) {
    List<X509Certificate> chain = Pem.certificates(certificateChain, source + " certificate");
    PrivateKey key = Pem.privateKey(privateKey, source + " private key");
    X509Certificate leaf = chain.get(0);
    if (!matches(key, leaf)) {
      throw new IllegalArgumentException(
          source
              + ": the private key does not belong to the certificate "
              + leaf.getSubjectX500Principal().getName());
    }
    Instant now = Instant.now();
    if (leaf.getNotAfter().toInstant().isBefore(now)) {
      throw new IllegalArgumentException(
          source
              + ": the certificate "
              + leaf.getSubjectX500Principal().getName()
              + " expired at "
              + leaf.getNotAfter().toInstant());
    }
    ca.ifPresent(c -> Pem.certificates(c, source + " CA"));
    return this;
  }

  /** The serving certificate. */
  public X509Certificate leaf() {
    return Pem.certificates(certificateChain, "certificate").get(0);
  }

  private static boolean matches(PrivateKey key, X509Certificate certificate) {
    String algorithm =
        switch (key.getAlgorithm()) {
          case "RSA" -> "SHA256withRSA";
          case "EC", "ECDSA" -> "SHA256withECDSA";
          case "Ed25519", "EdDSA" -> "Ed25519";
          default -> null;
        };
    if (algorithm == null) {
      return true; // An unusual key type: the TLS handshake will tell.
    }
    try {
      byte[] probe = "leasehold key check".getBytes(StandardCharsets.US_ASCII);
      Signature signer = Signature.getInstance(algorithm);
      signer.initSign(key);
      signer.update(probe);
      byte[] signature = signer.sign();
      Signature verifier = Signature.getInstance(algorithm);
      verifier.initVerify(certificate.getPublicKey());
      verifier.update(probe);
      return verifier.verify(signature);
    } catch (GeneralSecurityException e) {
      return false;
    }
  }
}
