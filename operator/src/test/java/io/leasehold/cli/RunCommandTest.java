package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.api.TerraformState;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class RunCommandTest {

  private static final Path QUICKSTART =
      Path.of(
          System.getProperty("leasehold.projectRoot"), "examples/quickstart/terraformstate.yaml");

  private record Outcome(int exitCode, String out, String err) {}

  private static Outcome execute(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    int code = cli.execute(args);
    return new Outcome(code, out.toString(), err.toString());
  }

  @Test
  @DisplayName(
      "When run --embedded starts with the quick-start manifest, then it prints where the API is,"
          + " writes a kubeconfig, and the operator makes the quick-start state Ready")
  void embeddedRunServesQuickstart(@TempDir Path dir) throws Exception {
    Path kubeconfig = dir.resolve("kubeconfig");
    StringWriter out = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    AtomicInteger exit = new AtomicInteger(-1);
    Thread runner =
        new Thread(
            () ->
                exit.set(
                    cli.execute(
                        "run",
                        "--embedded",
                        "-f",
                        QUICKSTART.toString(),
                        "--kubeconfig-out",
                        kubeconfig.toString())));
    runner.start();
    try {
      Pattern api = Pattern.compile("^kubernetes-api: (http://\\S+)$", Pattern.MULTILINE);
      await().atMost(Duration.ofSeconds(60)).until(() -> api.matcher(out.toString()).find());
      Matcher m = api.matcher(out.toString());
      assertThat(m.find()).isTrue();
      String url = m.group(1);
      assertThat(out.toString()).contains("kubeconfig: " + kubeconfig.toAbsolutePath());
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> out.toString().contains("terraform-backend: http://127.0.0.1:"));
      assertThat(Files.readString(kubeconfig, StandardCharsets.UTF_8)).contains("server: " + url);

      Config config = Config.fromKubeconfig(Files.readString(kubeconfig));
      try (KubernetesClient client = new KubernetesClientBuilder().withConfig(config).build()) {
        await()
            .atMost(Duration.ofSeconds(30))
            .untilAsserted(
                () -> {
                  TerraformState s =
                      client
                          .resources(TerraformState.class)
                          .inNamespace("default")
                          .withName("quickstart")
                          .get();
                  assertThat(s).isNotNull();
                  assertThat(s.getStatus()).isNotNull();
                  assertThat(s.getStatus().getConditions())
                      .anyMatch(c -> c.getType().equals("Ready") && c.getStatus().equals("True"));
                });
        assertThat(
                client
                    .leases()
                    .inNamespace("default")
                    .withName("lock-tfstate-default-quickstart")
                    .get())
            .isNotNull();
      }
    } finally {
      runner.interrupt();
      runner.join(30_000);
    }
    assertThat(runner.isAlive()).isFalse();
  }

  @Test
  @DisplayName("When a manifest cannot be read, then run says which and exits with usage error")
  void missingManifest(@TempDir Path dir) {
    Outcome o = execute("run", "--embedded", "-f", dir.resolve("nope.yaml").toString());
    assertThat(o.exitCode()).isEqualTo(2);
    assertThat(o.err()).contains("cannot read manifest").contains("nope.yaml");
  }

  @Test
  @DisplayName("When a manifest is refused by the CRD, then run says why and exits 1")
  void invalidManifest(@TempDir Path dir) throws Exception {
    Path bad = dir.resolve("bad.yaml");
    Files.writeString(
        bad,
        """
        apiVersion: leasehold.io/v1alpha1
        kind: TerraformState
        metadata:
          name: network-2
        """);
    Outcome o = execute("run", "--embedded", "-f", bad.toString());
    assertThat(o.exitCode()).isEqualTo(1);
    assertThat(o.err())
        .contains("error: " + bad)
        .contains("TerraformState network-2 refused")
        .contains("must not end in '-<digits>'");
  }

  @Test
  @DisplayName("-f without --embedded is a usage error")
  void manifestsNeedEmbedded() {
    Outcome o = execute("run", "-f", "x.yaml");
    assertThat(o.exitCode()).isEqualTo(2);
    assertThat(o.err()).contains("-f, --kubeconfig-out and --replicas need --embedded");
  }

  @Test
  @DisplayName(
      "run --embedded --replicas 2 starts two replicas with leader election, each serving the"
          + " backend on its own port and printing its own terraform-backend line; a lock taken"
          + " through one holds on the other")
  void embeddedReplicas() throws Exception {
    StringWriter out = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    Thread runner =
        new Thread(
            () -> cli.execute("run", "--embedded", "--replicas", "2", "-f", QUICKSTART.toString()));
    runner.start();
    try {
      Pattern backend = Pattern.compile("^terraform-backend: (http://\\S+)$", Pattern.MULTILINE);
      Pattern metrics = Pattern.compile("^metrics: (http://\\S+)/metrics$", Pattern.MULTILINE);
      await()
          .atMost(Duration.ofSeconds(90))
          .until(() -> metrics.matcher(out.toString()).results().count() == 2);
      List<String> backends =
          backend.matcher(out.toString()).results().map(m -> m.group(1)).toList();
      List<String> managements =
          metrics.matcher(out.toString()).results().map(m -> m.group(1)).toList();
      assertThat(backends).hasSize(2).doesNotHaveDuplicates();

      HttpClient http = HttpClient.newHttpClient();
      String lock = "{\"ID\":\"r1\",\"Operation\":\"OperationTypeApply\",\"Who\":\"alice\"}";
      String other = "{\"ID\":\"r2\",\"Operation\":\"OperationTypeApply\",\"Who\":\"bob\"}";
      await()
          .atMost(Duration.ofSeconds(60))
          .until(
              () -> send(http, "LOCK", backends.get(0) + "default/quickstart/lock", lock) == 200);
      HttpResponse<String> blocked =
          http.send(
              HttpRequest.newBuilder(URI.create(backends.get(1) + "default/quickstart/lock"))
                  .method("LOCK", HttpRequest.BodyPublishers.ofString(other))
                  .build(),
              HttpResponse.BodyHandlers.ofString());
      assertThat(blocked.statusCode()).isEqualTo(423);
      assertThat(blocked.body()).contains("alice");

      // One replica leads; both are ready and say who leads.
      await()
          .atMost(Duration.ofSeconds(60))
          .untilAsserted(
              () -> {
                List<String> ready = new ArrayList<>();
                for (String m : managements) {
                  ready.add(
                      http.send(
                              HttpRequest.newBuilder(URI.create(m + "/readyz")).build(),
                              HttpResponse.BodyHandlers.ofString())
                          .body());
                }
                assertThat(ready)
                    .filteredOn(r -> r.contains("(this replica): reconciling"))
                    .hasSize(1);
                assertThat(ready).filteredOn(r -> r.contains("does not reconcile")).hasSize(1);
              });
      assertThat(send(http, "UNLOCK", backends.get(1) + "default/quickstart/lock", lock))
          .isEqualTo(200);
    } finally {
      runner.interrupt();
      runner.join(60_000);
    }
    assertThat(runner.isAlive()).isFalse();
  }

  private static int send(HttpClient http, String method, String url, String body)
      throws Exception {
    return http.send(
            HttpRequest.newBuilder(URI.create(url))
                .method(method, HttpRequest.BodyPublishers.ofString(body))
                .build(),
            HttpResponse.BodyHandlers.ofString())
        .statusCode();
  }
}
