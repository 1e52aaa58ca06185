package io.leasehold.tls;

import java.math.BigInteger;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Date;
import java.util.List;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.CertIOException;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A private CA of the backend's own and the certificates it issues: ECDSA P-256 keys, SHA-256
 * signatures, a CA valid for ten years and serving certificates valid for one.
 */
public final class SelfSignedCa {

  public static final Duration CA_VALIDITY = Duration.ofDays(3650);
  public static final Duration LEAF_VALIDITY = Duration.ofDays(365);

  private static final SecureRandom RANDOM = new SecureRandom();

  private final X509Certificate certificate;
  private final PrivateKey key;

  private SelfSignedCa(X509Certificate certificate, PrivateKey key) {
    this.certificate = certificate;
    this.key = key;
  }

  /** A new CA named {@code commonName}. */
  public static SelfSignedCa create(String commonName) {
    KeyPair pair = newKeyPair();
    X500Name name = new X500Name("CN=" + commonName + ",O=leasehold");
    Instant now = Instant.now();
    try {
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      X509v3CertificateBuilder builder =
          new JcaX509v3CertificateBuilder(
                  name,
                  serial(),
                  Date.from(now.minus(Duration.ofMinutes(5))),
                  Date.from(now.plus(CA_VALIDITY)),
                  name,
                  pair.getPublic())
              .addExtension(Extension.basicConstraints, true, new BasicConstraints(0))
              .addExtension(
                  Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign))
              .addExtension(
                  Extension.subjectKeyIdentifier,
                  false,
                  ext.createSubjectKeyIdentifier(pair.getPublic()));
      return new SelfSignedCa(sign(builder, pair.getPrivate()), pair.getPrivate());
    } catch (GeneralSecurityException | CertIOException e) {
      throw new IllegalStateException("cannot create a CA certificate: " + e.getMessage(), e);
    }
  }

  /** The CA stored earlier as PEM. */
  public static SelfSignedCa of(String certificatePem, String keyPem) {
    return new SelfSignedCa(
        Pem.certificates(certificatePem, "CA certificate").get(0),
        Pem.privateKey(keyPem, "CA private key"));
  }

  public X509Certificate certificate() {
    return certificate;
  }

  public String certificatePem() {
    return Pem.certificate(certificate);
  }

  public String keyPem() {
    return Pem.privateKey(key);
  }

  /**
   * A serving certificate for {@code names} (DNS names and IP addresses; the first is also its
   * common name), signed by this CA, valid for {@link #LEAF_VALIDITY} or until the CA expires.
   */
  public TlsMaterial issue(Collection<String> names) {
    if (names.isEmpty()) {
      throw new IllegalArgumentException("a serving certificate needs at least one name");
    }
    KeyPair pair = newKeyPair();
    Instant now = Instant.now();
    Instant notAfter = now.plus(LEAF_VALIDITY);
    if (notAfter.isAfter(certificate.getNotAfter().toInstant())) {
      notAfter = certificate.getNotAfter().toInstant();
    }
    List<GeneralName> alternatives = new ArrayList<>();
    for (String n : names) {
      alternatives.add(
          isIpAddress(n)
              ? new GeneralName(GeneralName.iPAddress, n)
              : new GeneralName(GeneralName.dNSName, n));
    }
    try {
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      X509v3CertificateBuilder builder =
          new JcaX509v3CertificateBuilder(
                  certificate,
                  serial(),
                  Date.from(now.minus(Duration.ofMinutes(5))),
                  Date.from(notAfter),
                  new X500Name("CN=" + names.iterator().next()),
                  pair.getPublic())
              .addExtension(Extension.basicConstraints, true, new BasicConstraints(false))
              .addExtension(
                  Extension.keyUsage,
                  true,
                  new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment))
              .addExtension(
                  Extension.extendedKeyUsage,
                  false,
                  new ExtendedKeyUsage(KeyPurposeId.id_kp_serverAuth))
              .addExtension(
                  Extension.subjectAlternativeName,
                  false,
                  new GeneralNames(alternatives.toArray(GeneralName[]::new)))
              .addExtension(
                  Extension.authorityKeyIdentifier,
                  false,
                  ext.createAuthorityKeyIdentifier(certificate))
              .addExtension(
                  Extension.subjectKeyIdentifier,
                  false,
                  ext.createSubjectKeyIdentifier(pair.getPublic()));
      X509Certificate leaf = sign(builder, key);
      return new TlsMaterial(
          Pem.certificate(leaf),
          Pem.privateKey(pair.getPrivate()),
          java.util.Optional.of(certificatePem()));
    } catch (GeneralSecurityException | CertIOException e) {
      throw new IllegalStateException("cannot issue a serving certificate: " + e.getMessage(), e);
    }
  }

  /**
   * A client certificate for {@code user} in {@code groups} (the common name and organisations, as
   * the Kubernetes API server reads them), signed by this CA. For tests and for issuing runners
   * certificates from a CA kept by hand.
   */
  public TlsMaterial issueClient(String user, Collection<String> groups) {
    KeyPair pair = newKeyPair();
    Instant now = Instant.now();
    StringBuilder subject = new StringBuilder("CN=" + user);
    groups.forEach(g -> subject.append(",O=").append(g));
    try {
      X509v3CertificateBuilder builder =
          new JcaX509v3CertificateBuilder(
                  certificate,
                  serial(),
                  Date.from(now.minus(Duration.ofMinutes(5))),
                  Date.from(now.plus(Duration.ofDays(30))),
                  new X500Name(subject.toString()),
                  pair.getPublic())
              .addExtension(Extension.basicConstraints, true, new BasicConstraints(false))
              .addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature))
              .addExtension(
                  Extension.extendedKeyUsage,
                  false,
                  new ExtendedKeyUsage(KeyPurposeId.id_kp_clientAuth));
      X509Certificate leaf = sign(builder, key);
      return new TlsMaterial(
          Pem.certificate(leaf),
          Pem.privateKey(pair.getPrivate()),
          java.util.Optional.of(certificatePem()));
    } catch (CertIOException e) {
      throw new IllegalStateException("cannot issue a client certificate: " + e.getMessage(), e);
    }
  }

  private static X509Certificate sign(X509v3CertificateBuilder builder, PrivateKey key) {
    try {
      return new JcaX509CertificateConverter()
          .getCertificate(builder.build(new JcaContentSignerBuilder("SHA256withECDSA").build(key)));
    } catch (OperatorCreationException | java.security.cert.CertificateException e) {
      throw new IllegalStateException("cannot sign a certificate: " + e.getMessage(), e);
    }
  }

  private static KeyPair newKeyPair() {
    try {
      KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
      generator.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
      return generator.generateKeyPair();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot generate an EC key pair: " + e.getMessage(), e);
    }
  }

  private static BigInteger serial() {
    return new BigInteger(127, RANDOM).add(BigInteger.ONE);
  }

  static boolean isIpAddress(String name) {
    if (!name.matches("[0-9.]+") && !name.contains(":")) {
      return false;
    }
    try {
      InetAddress.getByName(name);
      return true;
    } catch (UnknownHostException e) {
      return false;
    }
  }
}
