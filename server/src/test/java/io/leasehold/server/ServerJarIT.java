package io.leasehold.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.jar.JarFile;
import java.util.regex.Pattern;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The server jar as packaged, the one the container image runs: none of the entries that {@code
 * server/forbidden-entries.txt} lists (the embedded API, the local jar's own code, the mock
 * servers, test libraries), and a command line that runs the operator and refuses the embedded API
 * and the demo plainly. The local jar is checked to carry what the server jar leaves out, so these
 * checks cannot pass on jars that were not built as they should be.
 */
class ServerJarIT {

  private static final Path SERVER = Path.of(System.getProperty("leasehold.serverJar"));
  private static final Path LOCAL = Path.of(System.getProperty("leasehold.localJar"));
  private static final Path FORBIDDEN = Path.of(System.getProperty("leasehold.forbiddenEntries"));
  private static final String VERSION = System.getProperty("leasehold.projectVersion");
  private static final String HOW_TO_GET = "'mvn -B -DskipTests package'";
  private static final Pattern EMBEDDED_OPTION =
      Pattern.compile(
          "(?m)^\\s+(-f, )?--(embedded|api-port|filename|kubeconfig-out|replicas)\\b.*$");

  /** The prefixes of forbidden entry names, without comments and blank lines. */
  static List<String> forbidden() throws IOException {
    List<String> prefixes = new ArrayList<>();
    for (String line : Files.readAllLines(FORBIDDEN, StandardCharsets.UTF_8)) {
      String prefix = line.strip();
      if (!prefix.isEmpty() && !prefix.startsWith("#")) {
        prefixes.add(prefix);
      }
    }
    return prefixes;
  }

  private static List<String> entries(Path jar) throws IOException {
    assertThat(jar).as("%s (built by mvn package)", jar).isRegularFile();
    try (JarFile file = new JarFile(jar.toFile())) {
      return Collections.list(file.entries()).stream().map(e -> e.getName()).toList();
    }
  }

  private record Run(int exit, String out, String err) {}

  private static Run run(Path jar, String... args) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-jar");
    command.add(jar.toString());
    command.addAll(List.of(args));
    Path out = Files.createTempFile("leasehold-server-jar", ".out");
    Path err = Files.createTempFile("leasehold-server-jar", ".err");
    try {
      Process process =
          new ProcessBuilder(command)
              .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
              .redirectOutput(out.toFile())
              .redirectError(err.toFile())
              .start();
      if (!process.waitFor(60, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        throw new AssertionError(String.join(" ", command) + " did not end within 60 s");
      }
      return new Run(
          process.exitValue(),
          Files.readString(out, StandardCharsets.UTF_8),
          Files.readString(err, StandardCharsets.UTF_8));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }

  @Test
  @DisplayName("The server jar has none of the forbidden entries; the local jar has them")
  void noForbiddenEntries() throws Exception {
    List<String> prefixes = forbidden();
    assertThat(prefixes).contains("io/leasehold/embedded/", "io/leasehold/local/");
    List<String> server = entries(SERVER);
    List<String> found =
        server.stream().filter(e -> prefixes.stream().anyMatch(e::startsWith)).toList();
    assertThat(found).as("entries of %s that %s forbids", SERVER, FORBIDDEN).isEmpty();
    assertThat(server)
        .as("what the operator runs")
        .contains(
            "io/leasehold/cli/Main.class",
            "io/leasehold/backend/HttpBackend.class",
            "io/leasehold/operator/LeaseholdOperator.class",
            "META-INF/fabric8/terraformstates.leasehold.io-v1.yml");
    assertThat(entries(LOCAL))
        .as("the local jar %s carries what the server jar leaves out", LOCAL)
        .contains(
            "io/leasehold/embedded/EmbeddedKubernetes.class",
            "io/leasehold/embedded/admission-policies.yaml",
            "io/leasehold/local/Local.class",
            "io/leasehold/local/TwoEngineersDemo.class",
            "io/fabric8/kubernetes/client/server/mock/KubernetesMockServer.class");
  }

  @Test
  @DisplayName("java -jar leasehold-server.jar --version prints the version and the commit")
  void version() throws Exception {
    Run version = run(SERVER, "--version");
    assertThat(version.exit()).as(version.err()).isZero();
    assertThat(version.out()).startsWith("leasehold " + VERSION).contains("commit ");
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(
      strings = {
        "run --embedded",
        "run --embedded --http-port 0 -f examples/quickstart/state.yaml",
        "run --kubeconfig-out kubeconfig",
        "demo"
      })
  @DisplayName(
      "The server jar refuses the embedded API and the demo at once: exit 2, a message naming the"
          + " local jar and how to build it, no stack trace")
  void refusesLocalOnlyCommands(String args) throws Exception {
    Run refused = run(SERVER, args.split(" "));
    assertThat(refused.exit()).as("exit status; stderr: %s", refused.err()).isEqualTo(2);
    assertThat(refused.out()).isEmpty();
    assertThat(refused.err())
        .contains("needs the local jar")
        .contains("This is the server jar (leasehold-server.jar")
        .contains(HOW_TO_GET)
        .contains("operator/target/leasehold.jar")
        .doesNotContain("Exception")
        .doesNotContain("\tat ");
    assertThat(refused.err().lines().count()).as(refused.err()).isEqualTo(1);
  }

  @Test
  @DisplayName(
      "The server jar's help shows neither the demo nor the embedded API's options, and says"
          + " they need the local jar; the local jar's help shows both")
  void helpShowsWhatTheJarCanDo() throws Exception {
    Run help = run(SERVER, "--help");
    assertThat(help.exit()).as(help.err()).isZero();
    assertThat(help.out())
        .contains("  run ")
        .doesNotContainPattern("(?m)^\\s+demo\\s")
        .contains("This is the server jar")
        .contains(HOW_TO_GET);
    Run runHelp = run(SERVER, "run", "--help");
    assertThat(runHelp.exit()).as(runHelp.err()).isZero();
    assertThat(runHelp.out())
        .contains("--leader-election-lease")
        .doesNotContainPattern(EMBEDDED_OPTION.pattern())
        .contains("This is the server jar")
        .contains(HOW_TO_GET);

    Run local = run(LOCAL, "--help");
    assertThat(local.out()).containsPattern("(?m)^\\s+demo\\s").doesNotContain("server jar");
    Run localRun = run(LOCAL, "run", "--help");
    assertThat(localRun.out()).containsPattern(EMBEDDED_OPTION.pattern());
  }
}
