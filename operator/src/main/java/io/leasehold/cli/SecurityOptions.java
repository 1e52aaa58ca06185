package io.leasehold.cli;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.tls.BackendTls;
import io.leasehold.tls.TlsSource;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/** {@code run}'s options for HTTPS, client certificates and the tokens the backend accepts. */
final class SecurityOptions {

  @Option(
      names = "--tls-cert-file",
      paramLabel = "FILE",
      description =
          "Certificate chain (PEM) the backend serves HTTPS with, e.g. tls.crt of a mounted"
              + " kubernetes.io/tls Secret from cert-manager; read again every minute.")
  Path certFile;

  @Option(
      names = "--tls-key-file",
      paramLabel = "FILE",
      description = "Private key (PEM) of --tls-cert-file.")
  Path keyFile;

  @Option(
      names = "--tls-ca-file",
      paramLabel = "FILE",
      description =
          "CA certificate(s) (PEM) that sign --tls-cert-file, for --tls-publish-ca (e.g. ca.crt"
              + " of the same Secret).")
  Path caFile;

  @Option(
      names = "--tls-self-signed",
      paramLabel = "SECRET",
      description =
          "Serve HTTPS with a CA and certificate the operator makes itself and keeps in this"
              + " Secret of the operator's namespace (shared by every replica, renewed before it"
              + " expires).")
  String selfSignedSecret;

  @Option(
      names = "--tls-dns-name",
      paramLabel = "NAME",
      split = ",",
      description =
          "Name (DNS or IP) clients reach the backend by, written into the --tls-self-signed"
              + " certificate (repeatable; embedded default: localhost,127.0.0.1).")
  List<String> dnsNames = new ArrayList<>();

  @Option(
      names = "--tls-publish-ca",
      paramLabel = "CONFIGMAP",
      description =
          "Publish the backend's CA as this ConfigMap (key ca.crt) in every namespace holding a"
              + " TerraformState and in --tls-publish-namespace, for runners to mount.")
  String publishCa;

  @Option(
      names = "--tls-publish-namespace",
      paramLabel = "NS",
      split = ",",
      description = "More namespaces to publish the CA in (repeatable or comma-separated).")
  List<String> publishNamespaces = new ArrayList<>();

  @Option(
      names = "--tls-client-ca",
      paramLabel = "FILE",
      description =
          "CA certificate(s) (PEM) that sign client certificates; with it clients present one"
              + " (Terraform's client_certificate_pem and client_private_key_pem).")
  Path clientCa;

  @Option(
      names = "--tls-client-auth",
      paramLabel = "MODE",
      defaultValue = "require",
      description =
          "With --tls-client-ca: 'require' (every connection presents a certificate) or"
              + " 'request' (a client without one uses its token). Default: ${DEFAULT-VALUE}.")
  String clientAuth;

  @Option(
      names = "--tls-reload-interval",
      paramLabel = "DURATION",
      defaultValue = "1m",
      converter = DurationConverter.class,
      description = "How often the certificate is read again (default 1m).")
  Duration reloadInterval;

  @Option(
      names = "--plain-http",
      description =
          "Serve the backend over plain HTTP: tokens then cross the network in clear text. Only"
              + " where something else encrypts the traffic (a service mesh).")
  boolean plainHttp;

  @Option(
      names = "--token-audience",
      paramLabel = "AUDIENCE",
      defaultValue = KubernetesAccess.AUDIENCE,
      description =
          "Audience the runners' projected ServiceAccount tokens must be issued for (default:"
              + " ${DEFAULT-VALUE}).")
  String tokenAudience;

  @Option(
      names = "--accept-api-server-tokens",
      description =
          "Also accept tokens issued for the API server (a pod's default token), during a"
              + " migration to audience-bound tokens. Off by default: such a token sent to the"
              + " backend could be replayed against the API server.")
  boolean acceptApiServerTokens;

  KubernetesAccess.Tokens tokens() {
    return new KubernetesAccess.Tokens(tokenAudience, acceptApiServerTokens);
  }

  boolean tlsRequested() {
    return certFile != null || keyFile != null || selfSignedSecret != null;
  }

  /**
   * Checks that the options fit together; {@code embedded} serves plain HTTP on loopback unless TLS
   * is asked for, while a cluster deployment must choose HTTPS or say --plain-http.
   */
  void validate(CommandLine commandLine, boolean embedded) {
    List<String> problems = new ArrayList<>();
    if (plainHttp && tlsRequested()) {
      problems.add("--plain-http cannot be combined with --tls-cert-file or --tls-self-signed");
    }
    if ((certFile == null) != (keyFile == null)) {
      problems.add("--tls-cert-file and --tls-key-file go together");
    }
    if (certFile != null && selfSignedSecret != null) {
      problems.add("choose one of --tls-cert-file and --tls-self-signed");
    }
    if (!tlsRequested()) {
      for (var o :
          List.of(
              new Object[] {caFile, "--tls-ca-file"},
              new Object[] {clientCa, "--tls-client-ca"},
              new Object[] {publishCa, "--tls-publish-ca"})) {
        if (o[0] != null) {
          problems.add(
              o[1] + " needs HTTPS: --tls-cert-file and --tls-key-file, or --tls-self-signed");
        }
      }
    }
    if (!embedded && selfSignedSecret != null && dnsNames.isEmpty()) {
      problems.add(
          "--tls-self-signed needs --tls-dns-name with the names runners reach the backend by"
              + " (such as leasehold.leasehold-system.svc)");
    }
    if (!dnsNames.isEmpty() && selfSignedSecret == null) {
      problems.add("--tls-dns-name is for --tls-self-signed");
    }
    if (!publishNamespaces.isEmpty() && publishCa == null) {
      problems.add("--tls-publish-namespace needs --tls-publish-ca");
    }
    if (!List.of("require", "request").contains(clientAuth)) {
      problems.add("--tls-client-auth is 'require' or 'request', not '" + clientAuth + "'");
    }
    for (Path p : new Path[] {certFile, keyFile, clientCa}) {
      if (p != null && !Files.isReadable(p)) {
        problems.add("cannot read " + p);
      }
    }
    if (!embedded && !plainHttp && !tlsRequested()) {
      problems.add(
          "the backend serves HTTPS: give --tls-cert-file and --tls-key-file (a mounted Secret,"
              + " from cert-manager or your own CA) or --tls-self-signed SECRET; or --plain-http"
              + " to serve plain HTTP, where tokens cross the network in clear text");
    }
    if (!problems.isEmpty()) {
      throw new CommandLine.ParameterException(commandLine, String.join("; ", problems));
    }
  }

  /**
   * The backend's HTTPS, or empty for plain HTTP.
   *
   * @param secretNamespace where the --tls-self-signed Secret lives
   * @param defaultNames names for the self-signed certificate when --tls-dns-name gives none
   */
  Optional<BackendTls> backendTls(
      KubernetesClient client, String secretNamespace, List<String> defaultNames) {
    if (!tlsRequested()) {
      return Optional.empty();
    }
    TlsSource source =
        selfSignedSecret != null
            ? TlsSource.selfSigned(
                client,
                secretNamespace,
                selfSignedSecret,
                dnsNames.isEmpty() ? defaultNames : dnsNames,
                Duration.ofDays(30))
            : TlsSource.files(certFile, keyFile, Optional.ofNullable(caFile));
    BackendTls.ClientAuthentication clients = BackendTls.ClientAuthentication.NONE;
    if (clientCa != null) {
      try {
        clients =
            new BackendTls.ClientAuthentication(
                "request".equals(clientAuth)
                    ? BackendTls.ClientCertificates.REQUEST
                    : BackendTls.ClientCertificates.REQUIRE,
                Files.readString(clientCa),
                "--tls-client-ca " + clientCa);
      } catch (java.io.IOException e) {
        throw new IllegalArgumentException("cannot read --tls-client-ca " + clientCa, e);
      }
    }
    return Optional.of(BackendTls.load(source, clients, reloadInterval));
  }

  Optional<String> publishCa() {
    return Optional.ofNullable(publishCa);
  }

  Set<String> publishNamespaces() {
    return new LinkedHashSet<>(publishNamespaces);
  }
}
