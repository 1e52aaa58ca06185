package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import picocli.CommandLine;

/** run refuses to serve the backend in a way nobody asked for, saying what to give instead. */
class SecurityOptionsTest {

  private record Outcome(int exitCode, String err) {}

  private static Outcome execute(String... args) {
    StringWriter err = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(new StringWriter(), true));
    cli.setErr(new PrintWriter(err, true));
    return new Outcome(cli.execute(args), err.toString());
  }

  @Test
  @DisplayName(
      "Against a cluster, run without a certificate or --plain-http stops before connecting and"
          + " says how to serve HTTPS")
  void httpsOrSayPlain() {
    Outcome o = execute("run");
    assertThat(o.exitCode()).isEqualTo(2);
    assertThat(o.err())
        .contains("the backend serves HTTPS")
        .contains("--tls-cert-file and --tls-key-file")
        .contains("--tls-self-signed SECRET")
        .contains("--plain-http");
  }

  @ParameterizedTest(name = "{0}")
  @DisplayName("Options that do not fit together are refused, naming them")
  @CsvSource(
      delimiter = '|',
      value = {
        "--plain-http --tls-self-signed s --tls-dns-name a | --plain-http cannot be combined",
        "--tls-cert-file CERT | --tls-cert-file and --tls-key-file go together",
        "--tls-self-signed s | --tls-self-signed needs --tls-dns-name",
        "--plain-http --tls-client-ca CERT | --tls-client-ca needs HTTPS",
        "--plain-http --tls-publish-ca ca | --tls-publish-ca needs HTTPS",
        "--tls-self-signed s --tls-dns-name a --tls-client-ca CERT --tls-client-auth maybe"
            + " | --tls-client-auth is 'require' or 'request'",
        "--tls-cert-file CERT --tls-key-file /nonexistent/key | cannot read /nonexistent/key",
      })
  void inconsistent(String args, String message, @TempDir Path dir) throws Exception {
    Path cert = Files.writeString(dir.resolve("tls.crt"), "x");
    String[] argv = ("run " + args.replace("CERT", cert.toString())).split(" ");
    Outcome o = execute(argv);
    assertThat(o.exitCode()).isEqualTo(2);
    assertThat(o.err()).contains(message);
  }
}
