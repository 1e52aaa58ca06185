package io.leasehold.cluster;

import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.ServiceAccountBuilder;
import io.fabric8.kubernetes.api.model.authentication.BoundObjectReferenceBuilder;
import io.fabric8.kubernetes.api.model.authentication.TokenRequest;
import io.fabric8.kubernetes.api.model.authentication.TokenRequestBuilder;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * The real control plane of {@code hack/cluster.sh} (kube-apiserver, etcd, controller-manager,
 * scheduler and a kwok node), as the real-cluster tier's tests see it.
 *
 * <p>Its directory comes from {@code -Dleasehold.cluster.dir} or {@code $LEASEHOLD_CLUSTER_DIR};
 * {@code hack/test.sh} starts a cluster and passes it. Without one, every test of the tier fails
 * saying how to start it: the tier never passes by skipping.
 */
public final class RealCluster {

  private static RealCluster instance;

  private final Path dir;
  private final Path kubeconfig;
  private final KubernetesClient admin;

  private RealCluster(Path dir) {
    this.dir = dir;
    this.kubeconfig = dir.resolve("kubeconfig");
    try {
      Config config = Config.fromKubeconfig(Files.readString(kubeconfig, StandardCharsets.UTF_8));
      config.setRequestTimeout(60_000);
      this.admin = new KubernetesClientBuilder().withConfig(config).build();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The running cluster; fails (never skips) with how to start one when there is none. */
  public static synchronized RealCluster get() {
    if (instance == null) {
      String where = System.getProperty("leasehold.cluster.dir");
      if (where == null || where.isBlank()) {
        where = System.getenv("LEASEHOLD_CLUSTER_DIR");
      }
      if (where == null || where.isBlank()) {
        throw new AssertionError(
            "the real-cluster tier needs a running control plane, and none was given: run"
                + " hack/test.sh (which builds it from Go modules, starts it and runs this tier),"
                + " or start one with `hack/cluster.sh up DIR` and pass -Dleasehold.cluster.dir=DIR"
                + " to `mvn -B -Preal-cluster verify`");
      }
      Path dir = Path.of(where).toAbsolutePath();
      if (!Files.isRegularFile(dir.resolve("kubeconfig"))) {
        throw new AssertionError(
            "no cluster in "
                + dir
                + " (no kubeconfig there): start one with `hack/cluster.sh up "
                + dir
                + "`");
      }
      RealCluster cluster = new RealCluster(dir);
      try {
        cluster.admin.getKubernetesVersion();
      } catch (RuntimeException e) {
        throw new AssertionError(
            "the cluster in "
                + dir
                + " does not answer ("
                + e.getMessage()
                + "): `hack/cluster.sh status "
                + dir
                + "` tells which part is down; `hack/cluster.sh up` starts it",
            e);
      }
      instance = cluster;
    }
    return instance;
  }

  public Path dir() {
    return dir;
  }

  /** The admin kubeconfig ({@code system:masters}). */
  public Path kubeconfig() {
    return kubeconfig;
  }

  /** A client with the admin's rights: for setting up and for reading what happened. */
  public KubernetesClient admin() {
    return admin;
  }

  /** The API server's URL, for kubeconfigs of other identities. */
  public String server() {
    return admin.getConfiguration().getMasterUrl();
  }

  /** The cluster CA's certificate (PEM): the API server's serving certificate is signed by it. */
  public Path caFile() {
    return dir.resolve("pki/ca.crt");
  }

  /** Creates a namespace of its own for one test: {@code PREFIX-xxxxxx}. */
  public String newNamespace(String prefix) {
    String name = prefix + "-" + UUID.randomUUID().toString().substring(0, 6);
    admin
        .namespaces()
        .resource(
            new NamespaceBuilder()
                .withNewMetadata()
                .withName(name)
                .addToLabels("leasehold.io/test", "true")
                .endMetadata()
                .build())
        .create();
    return name;
  }

  /** Creates a ServiceAccount (if absent). */
  public void serviceAccount(String namespace, String name) {
    admin
        .serviceAccounts()
        .inNamespace(namespace)
        .resource(
            new ServiceAccountBuilder()
                .withNewMetadata()
                .withName(name)
                .withNamespace(namespace)
                .endMetadata()
                .build())
        .serverSideApply();
  }

  /** A token of a ServiceAccount for {@code audience}, by the TokenRequest API. */
  public String token(String namespace, String serviceAccount, String audience, Duration ttl) {
    TokenRequest request =
        new TokenRequestBuilder()
            .withNewSpec()
            .withAudiences(audience)
            .withExpirationSeconds(ttl.toSeconds())
            .endSpec()
            .build();
    return admin
        .serviceAccounts()
        .inNamespace(namespace)
        .withName(serviceAccount)
        .tokenRequest(request)
        .getStatus()
        .getToken();
  }

  /**
   * A token bound to a pod, as the kubelet projects it into the pod: TokenReview names the pod, so
   * the operator can tell it is the pod of an admitted Job.
   */
  public String podToken(Pod pod, String audience) {
    TokenRequest request =
        new TokenRequestBuilder()
            .withNewSpec()
            .withAudiences(audience)
            .withExpirationSeconds(3600L)
            .withBoundObjectRef(
                new BoundObjectReferenceBuilder()
                    .withApiVersion("v1")
                    .withKind("Pod")
                    .withName(pod.getMetadata().getName())
                    .withUid(pod.getMetadata().getUid())
                    .build())
            .endSpec()
            .build();
    return admin
        .serviceAccounts()
        .inNamespace(pod.getMetadata().getNamespace())
        .withName(pod.getSpec().getServiceAccountName())
        .tokenRequest(request)
        .getStatus()
        .getToken();
  }

  /** A kubeconfig that authenticates with {@code token} (for a process of the operator). */
  public Path kubeconfigWithToken(Path file, String token, String namespace) {
    String config =
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: real
          cluster:
            server: %s
            certificate-authority: %s
        users:
        - name: token
          user:
            token: %s
        contexts:
        - name: real
          context: {cluster: real, user: token, namespace: %s}
        current-context: real
        """
            .formatted(server(), caFile(), token, namespace);
    try {
      Files.writeString(file, config, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return file;
  }

  /** Stops the API server, waits {@code pause}, starts it again (hack/cluster.sh). */
  public void restartApiServer(Duration pause) {
    script("restart-apiserver", Long.toString(pause.toSeconds()));
  }

  private void script(String... args) {
    Path script = projectRoot().resolve("hack/cluster.sh");
    List<String> command = new java.util.ArrayList<>();
    command.add(script.toString());
    command.add(args[0]);
    command.add(dir.toString());
    command.addAll(List.of(args).subList(1, args.length));
    try {
      Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(5, TimeUnit.MINUTES) || p.exitValue() != 0) {
        throw new IllegalStateException(
            "hack/cluster.sh " + String.join(" ", args) + " failed:\n" + out);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** The checkout's root directory. */
  public static Path projectRoot() {
    String root = System.getProperty("leasehold.projectRoot");
    return (root == null ? Path.of("..") : Path.of(root)).toAbsolutePath().normalize();
  }
}
