package io.leasehold.tls;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TlsClients;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import javax.net.ssl.SSLHandshakeException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The backend over HTTPS: clients that verify it against its CA reach it, others cannot; client
 * certificates are required, verified and identify the client; certificates are renewed without a
 * restart; the self-signed CA is shared by replicas through its Secret and published to runners.
 */
class BackendTlsTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static OperatorHarness harness;

  @TempDir static Path dir;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    TerraformState s = new TerraformState();
    s.getMetadata().setName("tls");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    // SubjectAccessReviews: only the user ci-bot may touch the state.
    harness
        .api()
        .mockServer()
        .expect()
        .post()
        .withPath("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .andReply(
            200,
            r -> {
              try {
                ObjectNode review = (ObjectNode) JSON.readTree(r.getBody().readUtf8());
                boolean allowed = review.at("/spec/user").asText().equals("ci-bot");
                review.putObject("status").put("allowed", allowed);
                return review;
              } catch (Exception e) {
                throw new IllegalStateException(e);
              }
            })
        .always();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static HttpBackend serve(BackendTls tls) {
    return io.leasehold.cli.Replica.serve(
        harness.operator(),
        new io.leasehold.cli.Replica.Backend(
            new KubernetesAccess(harness.client()),
            JobPods.NONE,
            new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1)).withTls(tls),
            1024 * 1024));
  }

  private static HttpResponse<String> get(HttpClient http, String url) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(20)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static Path write(String name, String text) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, text);
    return p;
  }

  @Test
  @DisplayName(
      "The backend serves HTTPS from certificate files: a client verifying against the CA gets"
          + " through, one that trusts another CA cannot connect, and the URL says https")
  void servesHttpsFromFiles() throws Exception {
    SelfSignedCa ca = SelfSignedCa.create("test CA");
    TlsMaterial server = ca.issue(List.of("localhost", "127.0.0.1"));
    BackendTls tls =
        BackendTls.load(
            TlsSource.files(
                write("a.crt", server.certificateChain()),
                write("a.key", server.privateKey()),
                Optional.of(write("a-ca.crt", ca.certificatePem()))),
            BackendTls.ClientAuthentication.NONE,
            Duration.ofMinutes(1));
    try (HttpBackend backend = serve(tls)) {
      assertThat(backend.url()).startsWith("https://127.0.0.1:");
      HttpResponse<String> noToken =
          get(
              TlsClients.trusting(ca.certificatePem(), Optional.empty()),
              backend.url() + "default/tls");
      assertThat(noToken.statusCode()).as(noToken.body()).isEqualTo(401);

      HttpClient other =
          TlsClients.trusting(SelfSignedCa.create("other").certificatePem(), Optional.empty());
      assertThatThrownBy(() -> get(other, backend.url() + "default/tls"))
          .isInstanceOf(SSLHandshakeException.class)
          .hasStackTraceContaining("unable to find valid certification path");
    }
  }

  @Test
  @DisplayName(
      "With a client CA required, a connection without a certificate or with one from another"
          + " CA is refused; a verified certificate alone identifies its common name, which the"
          + " SubjectAccessReview then judges")
  void clientCertificatesRequired() throws Exception {
    SelfSignedCa ca = SelfSignedCa.create("server CA");
    SelfSignedCa clientCa = SelfSignedCa.create("client CA");
    TlsMaterial server = ca.issue(List.of("127.0.0.1"));
    BackendTls tls =
        BackendTls.load(
            TlsSource.files(
                write("b.crt", server.certificateChain()),
                write("b.key", server.privateKey()),
                Optional.empty()),
            new BackendTls.ClientAuthentication(
                BackendTls.ClientCertificates.REQUIRE, clientCa.certificatePem(), "client CA"),
            Duration.ofMinutes(1));
    try (HttpBackend backend = serve(tls)) {
      String url = backend.url() + "default/tls";
      HttpClient anonymous = TlsClients.trusting(ca.certificatePem(), Optional.empty());
      assertThatThrownBy(() -> get(anonymous, url)).isInstanceOf(java.io.IOException.class);
      HttpClient forged =
          TlsClients.trusting(
              ca.certificatePem(),
              Optional.of(SelfSignedCa.create("forger").issueClient("ci-bot", List.of())));
      assertThatThrownBy(() -> get(forged, url)).isInstanceOf(java.io.IOException.class);

      HttpResponse<String> bot =
          get(
              TlsClients.trusting(
                  ca.certificatePem(), Optional.of(clientCa.issueClient("ci-bot", List.of("ci")))),
              url);
      assertThat(bot.statusCode()).as(bot.body()).isEqualTo(404);
      assertThat(bot.body()).contains("no state");

      HttpResponse<String> intruder =
          get(
              TlsClients.trusting(
                  ca.certificatePem(), Optional.of(clientCa.issueClient("mallory", List.of()))),
              url);
      assertThat(intruder.statusCode()).isEqualTo(403);
      assertThat(intruder.body()).contains("mallory may not get terraformstates/state");
    }
  }

  @Test
  @DisplayName(
      "A renewed certificate written over the files is served to new connections without a"
          + " restart")
  void reloadsRenewedCertificate() throws Exception {
    SelfSignedCa ca = SelfSignedCa.create("renewing CA");
    TlsMaterial first = ca.issue(List.of("127.0.0.1"));
    Path crt = write("c.crt", first.certificateChain());
    Path key = write("c.key", first.privateKey());
    BackendTls tls =
        BackendTls.load(
            TlsSource.files(crt, key, Optional.empty()),
            BackendTls.ClientAuthentication.NONE,
            Duration.ofMillis(200));
    try (HttpBackend backend = serve(tls)) {
      String url = backend.url() + "default/tls";
      assertThat(servedSerial(ca, url)).isEqualTo(first.leaf().getSerialNumber());
      TlsMaterial second = ca.issue(List.of("127.0.0.1"));
      // As the kubelet updates a mounted Secret: each file replaced at once, never half-written.
      Files.move(
          write("c.key.new", second.privateKey()),
          key,
          java.nio.file.StandardCopyOption.ATOMIC_MOVE);
      Files.move(
          write("c.crt.new", second.certificateChain()),
          crt,
          java.nio.file.StandardCopyOption.ATOMIC_MOVE);
      await()
          .atMost(Duration.ofSeconds(20))
          .until(() -> servedSerial(ca, url).equals(second.leaf().getSerialNumber()));
    }
  }

  private static java.math.BigInteger servedSerial(SelfSignedCa ca, String url) throws Exception {
    // A new client each time: a new connection, and so a new handshake.
    HttpResponse<String> r = get(TlsClients.trusting(ca.certificatePem(), Optional.empty()), url);
    return ((X509Certificate) r.sslSession().orElseThrow().getPeerCertificates()[0])
        .getSerialNumber();
  }

  @Test
  @DisplayName(
      "Certificate files that are missing, unreadable or do not belong together stop the start"
          + " with a message naming the problem")
  void badFilesAreRefused() throws Exception {
    SelfSignedCa ca = SelfSignedCa.create("x");
    TlsMaterial one = ca.issue(List.of("a"));
    TlsMaterial two = ca.issue(List.of("b"));
    Path crt = write("d.crt", one.certificateChain());
    assertThatThrownBy(
            () -> TlsSource.files(crt, write("d.key", two.privateKey()), Optional.empty()).load())
        .hasMessageContaining("the private key does not belong to the certificate CN=a");
    assertThatThrownBy(
            () -> TlsSource.files(crt, dir.resolve("absent.key"), Optional.empty()).load())
        .hasMessageContaining("--tls-key-file")
        .hasMessageContaining("does not exist");
    assertThatThrownBy(
            () ->
                TlsSource.files(
                        write("e.crt", "hello"), write("e.key", one.privateKey()), Optional.empty())
                    .load())
        .hasMessageContaining("holds no PEM certificate");
  }

  @Test
  @DisplayName(
      "The self-signed CA is made once and kept in its Secret: a second replica serves the same"
          + " CA, a changed name list gets a new certificate from the same CA, and the CA is"
          + " published as a ConfigMap in each namespace holding a TerraformState")
  void selfSignedSharedAndPublished() throws Exception {
    KubernetesClient client = harness.client();
    TlsSource first =
        TlsSource.selfSigned(
            client,
            NAMESPACE,
            "backend-tls",
            List.of("localhost", "127.0.0.1"),
            Duration.ofDays(30));
    TlsMaterial a = first.load();
    TlsMaterial b =
        TlsSource.selfSigned(
                client,
                NAMESPACE,
                "backend-tls",
                List.of("localhost", "127.0.0.1"),
                Duration.ofDays(30))
            .load();
    assertThat(b).isEqualTo(a);
    assertThat(client.secrets().inNamespace(NAMESPACE).withName("backend-tls").get().getType())
        .isEqualTo("kubernetes.io/tls");

    TlsMaterial renamed =
        TlsSource.selfSigned(
                client,
                NAMESPACE,
                "backend-tls",
                List.of("localhost", "127.0.0.1", "leasehold.leasehold-system.svc"),
                Duration.ofDays(30))
            .load();
    assertThat(renamed.leaf().getSerialNumber()).isNotEqualTo(a.leaf().getSerialNumber());
    assertThat(renamed.ca()).isEqualTo(a.ca());
    assertThat(renamed.leaf().getSubjectAlternativeNames())
        .extracting(n -> String.valueOf(n.get(1)))
        .contains("leasehold.leasehold-system.svc");

    for (String ns : List.of("team-x", "runners")) {
      client
          .namespaces()
          .resource(
              new io.fabric8.kubernetes.api.model.NamespaceBuilder()
                  .withNewMetadata()
                  .withName(ns)
                  .endMetadata()
                  .build())
          .create();
    }
    TerraformState elsewhere = new TerraformState();
    elsewhere.getMetadata().setName("net");
    elsewhere.getMetadata().setNamespace("team-x");
    client.resource(elsewhere).create();
    BackendTls tls =
        BackendTls.load(first, BackendTls.ClientAuthentication.NONE, Duration.ofMinutes(1));
    try (CaPublisher publisher =
        CaPublisher.start(
            client,
            tls,
            "leasehold-ca",
            Set.of("runners"),
            java.util.Optional.of(
                () ->
                    client
                        .resources(TerraformState.class)
                        .inAnyNamespace()
                        .list()
                        .getItems()
                        .stream()
                        .map(s -> s.getMetadata().getNamespace())
                        .collect(java.util.stream.Collectors.toSet())))) {
      await()
          .atMost(Duration.ofSeconds(20))
          .untilAsserted(
              () -> {
                for (String ns : List.of(NAMESPACE, "team-x", "runners")) {
                  ConfigMap cm = client.configMaps().inNamespace(ns).withName("leasehold-ca").get();
                  assertThat(cm).as("ConfigMap leasehold-ca in %s", ns).isNotNull();
                  assertThat(cm.getData()).containsEntry("ca.crt", a.ca().orElseThrow());
                }
              });
    }
  }
}
