package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One version everywhere: the POM's version (which {@code leasehold --version} prints) is the
 * chart's version and appVersion (the default image tag), and the image's version label, which the
 * Dockerfile refuses to set to anything else.
 */
class ReleaseVersionTest {

  private static final Path ROOT = Path.of(System.getProperty("leasehold.projectRoot"));
  private static final String VERSION = System.getProperty("leasehold.projectVersion");
  private static final List<String> VERSIONED =
      List.of(
          "pom.xml",
          "embedded-api/pom.xml",
          "operator/pom.xml",
          "server/pom.xml",
          "charts/leasehold/Chart.yaml");

  @Test
  @DisplayName("The chart's version and appVersion are the POM's version, the one --version prints")
  void chartAgreesWithThePom() throws IOException {
    String chart = Files.readString(ROOT.resolve("charts/leasehold/Chart.yaml"));
    assertThat(VERSION).as("the POM's version").matches("\\d+\\.\\d+\\.\\d+(-[0-9A-Za-z.-]+)?");
    assertThat(field(chart, "version")).as("Chart.yaml version").isEqualTo(VERSION);
    assertThat(field(chart, "appVersion")).as("Chart.yaml appVersion").isEqualTo(VERSION);
    assertThat(VersionProvider.line(VersionProvider.read()))
        .startsWith("leasehold " + VERSION + " ");
  }

  @Test
  @DisplayName(
      "The Dockerfile labels the image with VERSION and its build stops when VERSION is not the"
          + " jar's version")
  void dockerfileRefusesAnotherVersion() throws Exception {
    String dockerfile = Files.readString(ROOT.resolve("Dockerfile"));
    assertThat(dockerfile).contains("org.opencontainers.image.version=\"${VERSION}\"");
    assertThat(dockerfile).doesNotContainPattern("ARG VERSION=");
    Matcher check =
        Pattern.compile("(?s)(jar_version=.*?\\bfi)\\s*\\n")
            .matcher(dockerfile.replace("\\\n", "\n"));
    assertThat(check.find()).as("the version check in the Dockerfile's runtime stage").isTrue();
    String script =
        check
            .group(1)
            .replace(
                "/opt/java/bin/java -jar /tmp/leasehold-server.jar --version",
                "echo 'leasehold " + VERSION + " (commit unknown)'");

    assertThat(sh(script, VERSION).exit()).isZero();
    Result other = sh(script, "9.9.9");
    assertThat(other.exit()).isNotZero();
    assertThat(other.output())
        .contains("9.9.9")
        .contains("build with --build-arg VERSION=" + VERSION);
    assertThat(sh(script, "").exit()).isNotZero();
  }

  @Test
  @DisplayName(
      "hack/set-version.sh sets the version in every POM and the chart, and refuses a bad one")
  void setVersionSetsEveryPlace(@TempDir Path copy) throws Exception {
    Files.createDirectories(copy.resolve("hack"));
    Files.copy(ROOT.resolve("hack/set-version.sh"), copy.resolve("hack/set-version.sh"));
    for (String file : VERSIONED) {
      Files.createDirectories(copy.resolve(file).getParent());
      Files.copy(ROOT.resolve(file), copy.resolve(file));
    }

    Result set = run(copy, "bash", "hack/set-version.sh", "7.8.9");
    assertThat(set.exit()).as(set.output()).isZero();
    for (String pom : VERSIONED.subList(0, 4)) {
      String text = Files.readString(copy.resolve(pom));
      assertThat(text)
          .as(pom)
          .contains("<artifactId>leasehold-parent</artifactId>\n")
          .containsPattern(
              "<artifactId>leasehold-parent</artifactId>\\s*<version>7\\.8\\.9</version>")
          .doesNotContain("<version>" + VERSION + "</version>");
    }
    String chart = Files.readString(copy.resolve("charts/leasehold/Chart.yaml"));
    assertThat(field(chart, "version")).isEqualTo("7.8.9");
    assertThat(field(chart, "appVersion")).isEqualTo("7.8.9");

    Result bad = run(copy, "bash", "hack/set-version.sh", "7.8");
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.output()).contains("SemVer").contains("'7.8'");
    assertThat(field(Files.readString(copy.resolve("charts/leasehold/Chart.yaml")), "version"))
        .isEqualTo("7.8.9");
  }

  private static String field(String yaml, String name) {
    Matcher m = Pattern.compile("(?m)^" + name + ":\\s*\"?([^\"\\s]+)\"?\\s*$").matcher(yaml);
    assertThat(m.find()).as(name + " in Chart.yaml").isTrue();
    return m.group(1);
  }

  private record Result(int exit, String output) {}

  private static Result sh(String script, String version) throws Exception {
    ProcessBuilder pb = new ProcessBuilder("sh", "-euc", script).redirectErrorStream(true);
    pb.environment().put("VERSION", version);
    return finish(pb.start());
  }

  private static Result run(Path dir, String... command) throws Exception {
    return finish(
        new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start());
  }

  private static Result finish(Process p) throws Exception {
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    return new Result(p.exitValue(), out);
  }
}
