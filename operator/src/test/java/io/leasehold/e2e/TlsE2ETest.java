package io.leasehold.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.cli.Main;
import io.leasehold.support.Binaries;
import io.leasehold.support.Terraform;
import io.leasehold.tls.SelfSignedCa;
import io.leasehold.tls.TlsMaterial;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The real terraform against {@code run --embedded} over HTTPS with certificate verification on:
 * trusting the CA leasehold publishes, and with client certificates.
 */
class TlsE2ETest {

  private static final Path QUICKSTART =
      Path.of(
          System.getProperty("leasehold.projectRoot"), "examples/quickstart/terraformstate.yaml");
  private static final Pattern BACKEND =
      Pattern.compile("^terraform-backend: (https://\\S+)$", Pattern.MULTILINE);

  @BeforeAll
  static void needsTerraform() {
    Binaries.terraform();
  }

  /** {@code run} in a thread of this JVM, stopped by interrupting it. */
  private record Running(Thread thread, StringWriter out) implements AutoCloseable {
    static Running start(String... args) {
      StringWriter out = new StringWriter();
      CommandLine cli = Main.commandLine();
      cli.setOut(new PrintWriter(out, true));
      cli.setErr(new PrintWriter(out, true));
      Thread t = new Thread(() -> cli.execute(args), "run-embedded");
      t.start();
      await()
          .atMost(Duration.ofSeconds(60))
          .until(() -> BACKEND.matcher(out.toString()).find() || !t.isAlive());
      assertThat(t.isAlive()).as("run exited: %s", out).isTrue();
      return new Running(t, out);
    }

    String backend() {
      Matcher m = BACKEND.matcher(out.toString());
      assertThat(m.find()).isTrue();
      return m.group(1);
    }

    @Override
    public void close() throws InterruptedException {
      thread.interrupt();
      thread.join(30_000);
    }
  }

  private static Terraform terraform(Path dir, String backend, String wait) throws Exception {
    Files.createDirectories(dir);
    Terraform tf = new Terraform(dir);
    tf.writeConfig(
        Terraform.httpBackend(backend + "default/quickstart", wait)
            + "resource \"terraform_data\" \"x\" {\n  input = \"over https\"\n}\n");
    return tf;
  }

  @Test
  @DisplayName(
      "With a self-signed CA, terraform that trusts the CA leasehold published in its ConfigMap"
          + " applies over HTTPS, and terraform that does not trust it cannot even init")
  void selfSignedCaPublishedForRunners(@TempDir Path dir) throws Exception {
    Path kubeconfig = dir.resolve("kubeconfig");
    try (Running run =
        Running.start(
            "run",
            "--embedded",
            "-f",
            QUICKSTART.toString(),
            "--kubeconfig-out",
            kubeconfig.toString(),
            "--tls-self-signed",
            "leasehold-backend-tls",
            "--tls-publish-ca",
            "leasehold-ca")) {
      String ca;
      try (KubernetesClient client =
          new KubernetesClientBuilder()
              .withConfig(Config.fromKubeconfig(Files.readString(kubeconfig)))
              .build()) {
        await()
            .atMost(Duration.ofSeconds(30))
            .until(
                () ->
                    client.configMaps().inNamespace("default").withName("leasehold-ca").get()
                        != null);
        ConfigMap published =
            client.configMaps().inNamespace("default").withName("leasehold-ca").get();
        ca = published.getData().get("ca.crt");
      }
      assertThat(ca).startsWith("-----BEGIN CERTIFICATE-----");

      Terraform untrusting = terraform(dir.resolve("untrusting"), run.backend(), null);
      Terraform.Result refused = untrusting.run("init", "-input=false");
      assertThat(refused.exitCode()).isNotZero();
      assertThat(refused.output() + refused.errors())
          .contains("certificate signed by unknown authority");

      Terraform tf =
          terraform(dir.resolve("trusting"), run.backend(), "30s")
              .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", ca);
      tf.run("init", "-input=false").assertOk();
      tf.run("apply", "-auto-approve", "-input=false").assertOk();
      Terraform.Result pulled = tf.run("state", "pull").assertOk();
      assertThat(pulled.output()).contains("over https");
      assertThat(new ObjectMapper().readTree(pulled.output()).get("serial").asLong()).isEqualTo(1);
    }
  }

  @Test
  @DisplayName(
      "With client certificates required, terraform presenting one signed by the client CA"
          + " (client_certificate_pem, client_private_key_pem) applies, and terraform without"
          + " one is refused at the handshake")
  void clientCertificates(@TempDir Path dir) throws Exception {
    SelfSignedCa serverCa = SelfSignedCa.create("server CA");
    TlsMaterial server = serverCa.issue(List.of("localhost", "127.0.0.1"));
    SelfSignedCa clientCa = SelfSignedCa.create("client CA");
    TlsMaterial client = clientCa.issueClient("ci-runner", List.of("ci"));
    Path crt = Files.writeString(dir.resolve("tls.crt"), server.certificateChain());
    Path key = Files.writeString(dir.resolve("tls.key"), server.privateKey());
    Path clientCaFile = Files.writeString(dir.resolve("client-ca.crt"), clientCa.certificatePem());
    List<String> args =
        new ArrayList<>(
            List.of(
                "run",
                "--embedded",
                "-f",
                QUICKSTART.toString(),
                "--tls-cert-file",
                crt.toString(),
                "--tls-key-file",
                key.toString(),
                "--tls-client-ca",
                clientCaFile.toString()));
    try (Running run = Running.start(args.toArray(String[]::new))) {
      Terraform without =
          terraform(dir.resolve("without"), run.backend(), null)
              .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", serverCa.certificatePem());
      Terraform.Result refused = without.run("init", "-input=false");
      assertThat(refused.exitCode()).isNotZero();
      // Terraform and OpenTofu wrap the message at different places.
      assertThat(String.join(" ", (refused.output() + refused.errors()).split("\\s+")))
          .contains("remote error: tls: bad certificate");

      Terraform with =
          terraform(dir.resolve("with"), run.backend(), "30s")
              .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", serverCa.certificatePem())
              .env("TF_HTTP_CLIENT_CERTIFICATE_PEM", client.certificateChain())
              .env("TF_HTTP_CLIENT_PRIVATE_KEY_PEM", client.privateKey());
      with.run("init", "-input=false").assertOk();
      with.run("apply", "-auto-approve", "-input=false").assertOk();
      assertThat(with.run("state", "pull").assertOk().output()).contains("over https");
    }
  }
}
