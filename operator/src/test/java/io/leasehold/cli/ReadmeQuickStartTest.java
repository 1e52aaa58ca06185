package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * Runs the README's quick start as a new user would: its {@code run --embedded} command (in this
 * JVM, with the backend on a free port instead of 8080), then every shell block after it, in order,
 * in one shell, from a directory laid out like the repository's root. A README step that stops
 * working fails this test.
 */
class ReadmeQuickStartTest {

  private static final Path ROOT = Path.of(System.getProperty("leasehold.projectRoot"));
  private static final String SECTION = "## Quick start (no cluster needed)";
  private static final String DOCUMENTED_PORT = "8080";
  private static final Pattern SH_BLOCK =
      Pattern.compile("^```sh\\n(.*?)^```", Pattern.MULTILINE | Pattern.DOTALL);

  /** The quick start's shell blocks, in order. */
  static List<String> shellBlocks() throws IOException {
    String readme = Files.readString(ROOT.resolve("README.md"), StandardCharsets.UTF_8);
    int start = readme.indexOf(SECTION);
    assertThat(start).as("README has a section '" + SECTION + "'").isNotNegative();
    int end = readme.indexOf("\n## ", start + SECTION.length());
    String section = readme.substring(start, end < 0 ? readme.length() : end);
    List<String> blocks = new ArrayList<>();
    Matcher m = SH_BLOCK.matcher(section);
    while (m.find()) {
      blocks.add(m.group(1));
    }
    return blocks;
  }

  /** The arguments of the README's {@code java -jar ... leasehold.jar run ...} command. */
  static List<String> runArguments(String block) {
    String joined = block.replace("\\\n", " ");
    for (String line : joined.split("\n")) {
      int jar = line.indexOf("leasehold.jar run ");
      if (jar >= 0) {
        String args = line.substring(jar + "leasehold.jar ".length()).trim();
        return new ArrayList<>(List.of(args.split("\\s+")));
      }
    }
    throw new AssertionError("no 'leasehold.jar run' command in:\n" + block);
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  @Test
  @DisplayName(
      "The README's quick start works as written: kubectl and curl against run --embedded, a"
          + " runner Job completed by patching its status, force-unlock by annotation, and both"
          + " Terraform backend snippets")
  void quickStartWorksAsWritten(@TempDir Path work) throws Exception {
    // The README's commands call terraform and kubectl by name, from the PATH. Its
    // kubernetes-backend step takes the lock: tofu cannot stand in for terraform there.
    Binaries.kubectl();
    Binaries.hashicorpTerraform(
        "the quick start's kubernetes-backend step locks the state, and OpenTofu's kubernetes"
            + " backend writes its lock Lease as protobuf, which the embedded API does not read");
    List<String> blocks = shellBlocks();
    int runBlock = -1;
    for (int i = 0; i < blocks.size(); i++) {
      if (blocks.get(i).contains("leasehold.jar run --embedded")) {
        runBlock = i;
      }
    }
    assertThat(runBlock).as("the quick start starts run --embedded").isNotNegative();
    String port = Integer.toString(freePort());

    // A directory laid out like the repository's root: the examples, and a target/ of its own.
    Files.createSymbolicLink(work.resolve("examples"), ROOT.resolve("examples"));
    Files.createDirectories(work.resolve("target"));

    List<String> args = new ArrayList<>();
    List<String> documented = runArguments(blocks.get(runBlock));
    assertThat(documented).contains("--http-port", DOCUMENTED_PORT);
    for (int i = 0; i < documented.size(); i++) {
      String a = documented.get(i);
      String previous = i == 0 ? "" : documented.get(i - 1);
      if (previous.equals("--http-port")) {
        args.add(port);
      } else if (List.of("-f", "--filename", "--kubeconfig-out").contains(previous)) {
        args.add(work.resolve(a).toString());
      } else {
        args.add(a);
      }
    }

    StringWriter out = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    AtomicInteger exit = new AtomicInteger(-1);
    Thread runner = new Thread(() -> exit.set(cli.execute(args.toArray(String[]::new))));
    runner.start();
    try {
      await()
          .atMost(Duration.ofSeconds(60))
          .until(() -> out.toString().contains("kubeconfig: ") || !runner.isAlive());
      assertThat(out.toString()).as("run --embedded started").contains("kubeconfig: ");

      StringBuilder script = new StringBuilder();
      for (int i = runBlock + 1; i < blocks.size(); i++) {
        script.append(blocks.get(i).replace("127.0.0.1:" + DOCUMENTED_PORT, "127.0.0.1:" + port));
        script.append('\n');
      }
      ProcessBuilder shell =
          new ProcessBuilder("bash", "-euo", "pipefail", "-x", "-c", script.toString())
              .directory(work.toFile())
              .redirectErrorStream(true);
      Map<String, String> env = shell.environment();
      env.remove("KUBECONFIG");
      Binaries.environment(env);
      env.put("TF_IN_AUTOMATION", "1");
      env.put("CHECKPOINT_DISABLE", "1");
      env.put("TF_CLI_ARGS", "-no-color");
      Process p = shell.start();
      p.getOutputStream().close();
      String transcript = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(p.waitFor(5, TimeUnit.MINUTES)).isTrue();
      assertThat(p.exitValue()).as("the README's commands, as run:\n%s", transcript).isZero();

      assertThat(transcript)
          .contains("terraformstate.leasehold.io/quickstart condition met")
          .contains("annotated")
          .contains("ForceUnlocked")
          .contains("Apply complete! Resources: 1 added");
      Config config =
          Config.fromKubeconfig(
              Files.readString(work.resolve("target/embedded.kubeconfig"), StandardCharsets.UTF_8));
      try (KubernetesClient client = new KubernetesClientBuilder().withConfig(config).build()) {
        TerraformState state =
            client
                .resources(TerraformState.class)
                .inNamespace("default")
                .withName("quickstart")
                .get();
        assertThat(state.getStatus().getHolder()).isNullOrEmpty();
        assertThat(state.getStatus().getState().getSerial()).isEqualTo(1L);
        assertThat(state.getStatus().getState().getResources()).isEqualTo(1L);
        List<Job> jobs = client.batch().v1().jobs().inNamespace("default").list().getItems();
        assertThat(jobs).hasSize(1);
        assertThat(jobs.get(0).getStatus().getSucceeded()).isEqualTo(1);
      }
    } finally {
      runner.interrupt();
      runner.join(30_000);
    }
    assertThat(runner.isAlive()).isFalse();
  }
}
