package io.leasehold.tls;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Where the backend's certificate and key come from; read again to follow renewals. */
public interface TlsSource {

  /** The current material, validated. */
  TlsMaterial load();

  /** Names the source in messages. */
  String describe();

  /**
   * PEM files, as a mounted {@code kubernetes.io/tls} Secret gives them ({@code tls.crt}, {@code
   * tls.key}, {@code ca.crt}): cert-manager's, or your own. The kubelet updates mounted files when
   * the Secret changes, and each load reads them anew.
   */
  static TlsSource files(Path certificate, Path key, Optional<Path> ca) {
    return new TlsSource() {
      @Override
      public TlsMaterial load() {
        return new TlsMaterial(
                read(certificate, "--tls-cert-file"),
                read(key, "--tls-key-file"),
                // A Secret from a public or ACME issuer may hold no ca.crt: nothing to publish.
                ca.filter(Files::exists).map(p -> read(p, "--tls-ca-file")))
            .validated(describe());
      }

      @Override
      public String describe() {
        return certificate + " and " + key;
      }
    };
  }

  private static String read(Path file, String option) {
    try {
      return Files.readString(file, StandardCharsets.US_ASCII);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException(option + " " + file + " does not exist");
    } catch (IOException e) {
      throw new IllegalArgumentException(
          option + " " + file + " cannot be read: " + e.getMessage(), e);
    }
  }

  /**
   * A CA and serving certificate the operator makes itself and keeps in the Secret {@code
   * namespace/name} ({@code kubernetes.io/tls}: {@code tls.crt}, {@code tls.key}, {@code ca.crt},
   * and the CA's key in {@code ca.key}), shared by every replica: the first to start creates it,
   * the others read it. The serving certificate is issued again, from the same CA, when it has less
   * than {@code renewBefore} left or does not name every one of {@code names}.
   */
  static TlsSource selfSigned(
      KubernetesClient client,
      String namespace,
      String name,
      List<String> names,
      Duration renewBefore) {
    return new SelfSignedSecret(client, namespace, name, names, renewBefore);
  }

  /** The self-signed source. */
  final class SelfSignedSecret implements TlsSource {
    private static final Logger LOG = LoggerFactory.getLogger(SelfSignedSecret.class);
    static final String CA_KEY = "ca.key";

    private final KubernetesClient client;
    private final String namespace;
    private final String name;
    private final List<String> names;
    private final Duration renewBefore;

    SelfSignedSecret(
        KubernetesClient client,
        String namespace,
        String name,
        List<String> names,
        Duration renewBefore) {
      if (names.isEmpty()) {
        throw new IllegalArgumentException(
            "a self-signed certificate needs the names clients use (--tls-dns-name)");
      }
      this.client = client;
      this.namespace = namespace;
      this.name = name;
      this.names = List.copyOf(names);
      this.renewBefore = renewBefore;
    }

    @Override
    public String describe() {
      return "Secret " + namespace + "/" + name;
    }

    @Override
    public TlsMaterial load() {
      for (int attempt = 0; ; attempt++) {
        try {
          return loadOnce();
        } catch (KubernetesClientException e) {
          // 409: another replica created or renewed it at the same moment; read theirs.
          if (e.getCode() != 409 || attempt >= 3) {
            throw new IllegalStateException(
                "cannot keep the backend's certificate in " + describe() + ": " + e.getMessage(),
                e);
          }
        }
      }
    }

    private TlsMaterial loadOnce() {
      Secret secret = client.secrets().inNamespace(namespace).withName(name).get();
      if (secret == null) {
        SelfSignedCa ca = SelfSignedCa.create("leasehold backend CA");
        TlsMaterial material = ca.issue(names);
        client.resource(secret(null, ca, material)).create();
        LOG.info("created a CA and a serving certificate for {} in {}", names, describe());
        return material;
      }
      Map<String, String> data = secret.getData() == null ? Map.of() : secret.getData();
      String caPem = decode(data.get("ca.crt"));
      String caKey = decode(data.get(CA_KEY));
      if (caPem == null || caKey == null) {
        throw new IllegalStateException(
            describe()
                + " exists but holds no ca.crt and ca.key: it is not one leasehold made. Delete"
                + " it, or name another Secret");
      }
      SelfSignedCa ca = SelfSignedCa.of(caPem, caKey);
      Optional<TlsMaterial> current = current(data, caPem);
      if (current.isPresent() && !needsRenewal(current.get().leaf())) {
        return current.get();
      }
      if (expiresWithin(ca.certificate(), renewBefore)) {
        ca = SelfSignedCa.create("leasehold backend CA");
        LOG.warn(
            "the backend's CA in {} expires within {} days: a new CA is made; runners trust it once"
                + " they read the published CA again",
            describe(),
            renewBefore.toDays());
      }
      TlsMaterial material = ca.issue(names);
      client.resource(secret(secret, ca, material)).update();
      LOG.info("renewed the serving certificate for {} in {}", names, describe());
      return material;
    }

    private Optional<TlsMaterial> current(Map<String, String> data, String caPem) {
      String crt = decode(data.get("tls.crt"));
      String key = decode(data.get("tls.key"));
      if (crt == null || key == null) {
        return Optional.empty();
      }
      try {
        return Optional.of(new TlsMaterial(crt, key, Optional.of(caPem)).validated(describe()));
      } catch (IllegalArgumentException e) {
        LOG.warn(
            "the serving certificate in {} is unusable ({}): issuing a new one",
            describe(),
            e.getMessage());
        return Optional.empty();
      }
    }

    private boolean needsRenewal(X509Certificate leaf) {
      if (expiresWithin(leaf, renewBefore)) {
        return true;
      }
      Set<String> covered = new HashSet<>();
      try {
        if (leaf.getSubjectAlternativeNames() != null) {
          leaf.getSubjectAlternativeNames().forEach(n -> covered.add(String.valueOf(n.get(1))));
        }
      } catch (CertificateParsingException e) {
        return true;
      }
      for (String n : names) {
        if (!covered.contains(n)
            && !(SelfSignedCa.isIpAddress(n)
                && covered.stream().anyMatch(c -> sameAddress(c, n)))) {
          return true;
        }
      }
      return false;
    }

    private static boolean sameAddress(String a, String b) {
      try {
        return java.net.InetAddress.getByName(a).equals(java.net.InetAddress.getByName(b));
      } catch (java.net.UnknownHostException e) {
        return false;
      }
    }

    private static boolean expiresWithin(X509Certificate c, Duration d) {
      return c.getNotAfter().toInstant().isBefore(Instant.now().plus(d));
    }

    private Secret secret(Secret existing, SelfSignedCa ca, TlsMaterial material) {
      Map<String, String> data = new LinkedHashMap<>();
      data.put("tls.crt", encode(material.certificateChain()));
      data.put("tls.key", encode(material.privateKey()));
      data.put("ca.crt", encode(ca.certificatePem()));
      data.put(CA_KEY, encode(ca.keyPem()));
      SecretBuilder b =
          existing == null
              ? new SecretBuilder()
                  .withNewMetadata()
                  .withName(name)
                  .withNamespace(namespace)
                  .addToLabels("app.kubernetes.io/managed-by", "leasehold")
                  .addToLabels("app.kubernetes.io/component", "backend-tls")
                  .endMetadata()
                  .withType("kubernetes.io/tls")
              : new SecretBuilder(existing);
      return b.withData(data).build();
    }

    private static String encode(String s) {
      return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.US_ASCII));
    }

    private static String decode(String s) {
      return s == null
          ? null
          : new String(Base64.getDecoder().decode(s), StandardCharsets.US_ASCII);
    }
  }
}
