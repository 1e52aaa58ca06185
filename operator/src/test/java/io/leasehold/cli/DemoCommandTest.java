package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.support.Terraform;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Assumptions;
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
    Assumptions.assumeTrue(
        Terraform.available(), "terraform is not on the PATH: demo test skipped");
    String out = demo();
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
    assertThat(out)
        .contains("is not available, so the engineers' terraform is replayed")
        .contains("changes kept: [alice-subnet, bob-firewall-rule]")
        .contains("bob's write got HTTP 409");
  }
}
