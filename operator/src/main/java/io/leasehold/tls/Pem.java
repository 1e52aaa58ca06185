package io.leasehold.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;

/**
 * PEM text to and from certificates and private keys, in the forms Terraform and Kubernetes use.
 */
public final class Pem {

  private Pem() {}

  public static String certificate(X509Certificate certificate) {
    try {
      return block("CERTIFICATE", certificate.getEncoded());
    } catch (java.security.cert.CertificateEncodingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** A private key as PKCS#8 ({@code PRIVATE KEY}). */
  public static String privateKey(PrivateKey key) {
    return block("PRIVATE KEY", key.getEncoded());
  }

  private static String block(String type, byte[] der) {
    return "-----BEGIN "
        + type
        + "-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
        + "\n-----END "
        + type
        + "-----\n";
  }

  /**
   * The certificates in {@code pem}, in order; {@code what} names the source in the error.
   *
   * @throws IllegalArgumentException when there is none or one cannot be read
   */
  public static List<X509Certificate> certificates(String pem, String what) {
    if (pem == null || !pem.contains("-----BEGIN CERTIFICATE-----")) {
      throw new IllegalArgumentException(what + " holds no PEM certificate (BEGIN CERTIFICATE)");
    }
    try {
      List<X509Certificate> result = new ArrayList<>();
      for (var c :
          CertificateFactory.getInstance("X.509")
              .generateCertificates(
                  new ByteArrayInputStream(pem.getBytes(StandardCharsets.US_ASCII)))) {
        result.add((X509Certificate) c);
      }
      if (result.isEmpty()) {
        throw new IllegalArgumentException(what + " holds no PEM certificate");
      }
      return result;
    } catch (CertificateException e) {
      throw new IllegalArgumentException(
          what + " is not a readable PEM certificate: " + e.getMessage(), e);
    }
  }

  /**
   * The private key in {@code pem}: PKCS#8 ({@code PRIVATE KEY}), PKCS#1 ({@code RSA PRIVATE KEY},
   * cert-manager's default) or SEC1 ({@code EC PRIVATE KEY}).
   *
   * @throws IllegalArgumentException when it holds none, or an encrypted one
   */
  public static PrivateKey privateKey(String pem, String what) {
    if (pem == null || pem.isBlank()) {
      throw new IllegalArgumentException(what + " is empty: expected a PEM private key");
    }
    try (PEMParser parser = new PEMParser(new StringReader(pem))) {
      JcaPEMKeyConverter converter = new JcaPEMKeyConverter();
      for (Object o = parser.readObject(); o != null; o = parser.readObject()) {
        if (o instanceof PEMKeyPair pair) {
          return converter.getKeyPair(pair).getPrivate();
        }
        if (o instanceof PrivateKeyInfo info) {
          return converter.getPrivateKey(info);
        }
      }
    } catch (IOException | RuntimeException e) {
      throw new IllegalArgumentException(
          what + " is not a readable PEM private key: " + e.getMessage(), e);
    }
    throw new IllegalArgumentException(
        what
            + " holds no unencrypted PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE"
            + " KEY)");
  }
}
