package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.support.Binaries;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class DemoCommandTest {

  private static String demo(String... args) {
    StringWriter out = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    String[] all = new String[args.length + 1];
    all[0] = "demo";
    System.arraycopy(args, 0, all, 1, args.length);
    assertThat(cli.execute(all)).as(out.toString()).isZero();
    return out.toString();
  }

  @Test
  @DisplayName(
      "The demo with real terraform keeps both engineers' changes under the lock, and refuses"
          + " the losing -lock=false write instead of losing a change")
  void demoWithTerraform() {
    Binaries.Found terraform = Binaries.terraform();
    java.io.PrintStream err = System.err;
    java.io.ByteArrayOutputStream logs = new java.io.ByteArrayOutputStream();
    String out;
    System.setErr(new java.io.PrintStream(logs, true, java.nio.charset.StandardCharsets.UTF_8));
    try {
      out = demo("--terraform", terraform.path().toString());
    } finally {
      System.setErr(err);
    }
    assertThat(out.lines().limit(3))
        .anyMatch(
            l ->
                l.startsWith(
                    "The engineers run the real terraform: '"
                        + terraform.path()
                        + "' ("
                        + (terraform.isTofu() ? "OpenTofu v" : "Terraform v")));
    assertThat(logs.toString(java.nio.charset.StandardCharsets.UTF_8))
        .as("library log lines during the demo")
        .doesNotContain(" INFO ");
    assertThat(out)
        .contains("State after round 1: serial 3, changes kept: [alice-subnet, bob-firewall-rule]")
        .contains("write REFUSED (409)")
        .contains("terraform apply FAILED")
        .contains(
            "changes kept: [alice-dns-record, alice-subnet, bob-firewall-rule, bob-load-balancer]");
  }

  @Test
  @DisplayName("Without terraform the demo replays terraform's requests and says so")
  void demoWithoutTerraform() {
    String out = demo("--terraform", "/nonexistent/terraform");
    assertThat(out.lines().limit(3))
        .anyMatch(l -> l.contains("is not available, so the engineers' terraform is replayed"));
    assertThat(out)
        .contains("changes kept: [alice-subnet, bob-firewall-rule]")
        .contains("bob's write got HTTP 409");
  }
}
