package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class VersionProviderTest {

  @Test
  @DisplayName(
      "leasehold --version prints the project's version and the full commit the build recorded,"
          + " the checkout's HEAD")
  void printsVersionAndCommit() throws Exception {
    StringWriter out = new StringWriter();
    int exit = Main.commandLine().setOut(new PrintWriter(out)).execute("--version");

    assertThat(exit).isZero();
    String line = out.toString().trim();
    assertThat(line).matches("leasehold \\S+ \\(commit [0-9a-f]{40}(, modified)?\\)");
    assertThat(line).startsWith("leasehold " + System.getProperty("leasehold.projectVersion"));
    assertThat(line).contains("commit " + head());
  }

  @Test
  @DisplayName("A build that could not record the commit says the commit is unknown")
  void unknownCommit() {
    Properties info = new Properties();
    info.setProperty("version", "1.2.3");
    info.setProperty("commit", "${build.commit}");
    info.setProperty("dirty", "${build.dirty}");
    assertThat(VersionProvider.line(info)).isEqualTo("leasehold 1.2.3 (commit unknown)");
    assertThat(VersionProvider.line(new Properties()))
        .isEqualTo("leasehold (unknown version) (commit unknown)");
    info.setProperty("commit", "0123456789abcdef0123456789abcdef01234567");
    info.setProperty("dirty", "true");
    assertThat(VersionProvider.line(info))
        .isEqualTo("leasehold 1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, modified)");
  }

  private static String head() throws Exception {
    Process git =
        new ProcessBuilder("git", "rev-parse", "HEAD")
            .directory(Path.of(System.getProperty("leasehold.projectRoot")).toFile())
            .redirectErrorStream(true)
            .start();
    String head = new String(git.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    assertThat(git.waitFor(30, TimeUnit.SECONDS)).isTrue();
    Assumptions.assumeTrue(
        git.exitValue() == 0, "not a git checkout, so no commit to compare with: " + head);
    return head;
  }
}
