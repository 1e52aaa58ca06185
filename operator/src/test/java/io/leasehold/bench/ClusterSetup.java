package io.leasehold.bench;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.cluster.ChartInstall;
import io.leasehold.cluster.ClusterFixtures;
import io.leasehold.cluster.ClusterHttp;
import io.leasehold.cluster.ClusterOperator;
import io.leasehold.cluster.RealCluster;
import io.leasehold.cluster.StockTerraform;
import io.leasehold.support.Terraform;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;

/**
 * One run of a real-control-plane benchmark: a namespace of its own on the cluster of {@code
 * --cluster DIR} ({@code hack/cluster.sh up DIR}), the Helm chart's CRD, RBAC and admission
 * policies applied as {@code helm install} would, and the operator's production jar run as
 * processes under the chart's ServiceAccount and arguments ({@link ClusterOperator}), serving the
 * backend over HTTPS on 127.0.0.1. Clients authenticate with ServiceAccount tokens (audience {@code
 * leasehold}) of the chart's runner ServiceAccount; the API server's audit log counts requests.
 */
final class ClusterSetup implements AutoCloseable {

  /** The password of the backend's Basic auth is a token; the user name is not checked. */
  static final String USER = "runner";

  private final RealCluster cluster;
  private final KubernetesClient admin;
  private final String namespace;
  private final ChartInstall chart;
  private final ClusterOperator operator;
  private final String ca;
  private final SSLContext tls;
  private final AuditLog audit;

  private ClusterSetup(RealCluster cluster, String prefix, int replicas) throws Exception {
    this.cluster = cluster;
    this.admin = cluster.admin();
    this.audit = AuditLog.of(cluster.dir());
    this.namespace = cluster.newNamespace(prefix);
    this.chart = ChartInstall.apply(cluster, namespace);
    ChartInstall.awaitCrd(admin);
    ClusterOperator started = null;
    try {
      started = ClusterOperator.start(cluster, chart, namespace, replicas);
      for (ClusterOperator.Replica r : started.replicas()) {
        awaitListening(r);
      }
      this.ca = started.caPem(Duration.ofMinutes(2));
    } catch (RuntimeException | Error e) {
      if (started != null) {
        started.close();
      }
      admin.namespaces().withName(namespace).delete();
      throw e;
    }
    this.operator = started;
    this.tls = ClusterHttp.trusting(ca);
  }

  /** A namespace {@code PREFIX-xxxxxx} with the chart applied and {@code replicas} operators. */
  static ClusterSetup start(BenchSettings settings, String prefix, int replicas) throws Exception {
    return new ClusterSetup(connect(settings), prefix, replicas);
  }

  /**
   * The cluster of {@code --cluster DIR}: fails, saying how to start one, when none answers there
   * or when it keeps no audit log (started by an older {@code hack/cluster.sh}).
   */
  static RealCluster connect(BenchSettings settings) {
    if (settings.cluster() == null) {
      throw new IllegalStateException(
          "the real-control-plane benchmarks need --cluster DIR (a cluster started with"
              + " `hack/cluster.sh up DIR`)");
    }
    System.setProperty("leasehold.cluster.dir", settings.cluster().toAbsolutePath().toString());
    Path here = Path.of("").toAbsolutePath();
    Path root = Files.isRegularFile(here.resolve("hack/cluster.sh")) ? here : here.getParent();
    if (System.getProperty("leasehold.projectRoot") == null) {
      System.setProperty("leasehold.projectRoot", root.toString());
    }
    if (System.getProperty("leasehold.clusterLogs") == null) {
      System.setProperty(
          "leasehold.clusterLogs", root.resolve("operator/target/bench-cluster").toString());
    }
    RealCluster cluster = RealCluster.get();
    AuditLog.of(cluster.dir());
    return cluster;
  }

  /**
   * How every real-control-plane benchmark runs, the opening of its description: the control plane
   * (its API server's version) and the operator (one replica of the server jar).
   */
  static String describe(BenchSettings settings) {
    String plane;
    try {
      plane =
          "kube-apiserver "
              + connect(settings).admin().getKubernetesVersion().getGitVersion()
              + " with etcd, kube-controller-manager, kube-scheduler and a kwok node, built from"
              + " their Go modules and started by `hack/cluster.sh up`, on this machine";
    } catch (RuntimeException | AssertionError e) {
      plane = "a control plane from `hack/cluster.sh up` (" + e.getMessage() + ")";
    }
    return "On a real control plane ("
        + plane
        + "), with the server jar (`leasehold-server.jar`, the jar the image runs) as a process of"
        + " its own under the Helm chart's ServiceAccount, RBAC and arguments (one replica)";
  }

  KubernetesClient admin() {
    return admin;
  }

  RealCluster cluster() {
    return cluster;
  }

  String namespace() {
    return namespace;
  }

  ClusterOperator operator() {
    return operator;
  }

  AuditLog audit() {
    return audit;
  }

  /** The backend's CA (PEM), as the operator publishes it. */
  String ca() {
    return ca;
  }

  /** The audit log's user name of the operator: the chart's ServiceAccount. */
  String operatorUser() {
    return "system:serviceaccount:" + ChartInstall.NAMESPACE + ":" + chart.serviceAccount();
  }

  /** The URL of a state on replica {@code replica}'s backend. */
  String stateUrl(int replica, String state) {
    return operator.replica(replica).stateUrl(state);
  }

  /** A token of the chart's runner ServiceAccount for the backend (audience leasehold). */
  String runnerToken() {
    return cluster.token(namespace, ChartInstall.RUNNER, "leasehold", Duration.ofHours(2));
  }

  /** The Basic authorization header for a token. */
  static String authorization(String token) {
    return "Basic "
        + Base64.getEncoder().encodeToString((USER + ":" + token).getBytes(StandardCharsets.UTF_8));
  }

  /** An HTTPS client trusting the backend's CA, HTTP/1.1 as Terraform speaks it. */
  HttpClient http() {
    return HttpClient.newBuilder()
        .sslContext(tls)
        .connectTimeout(Duration.ofSeconds(10))
        .version(HttpClient.Version.HTTP_1_1)
        .build();
  }

  /** Creates the TerraformStates and waits until the operator reports each Ready. */
  void createStates(List<String> names) {
    for (String name : names) {
      admin.resource(ClusterFixtures.state(namespace, name)).create();
    }
    for (String name : names) {
      ClusterFixtures.awaitReady(admin, namespace, name);
    }
  }

  /**
   * A terraform working directory on a state through replica 0's backend, HTTPS and a runner's
   * token, {@code ?wait=} when {@code wait} is set; {@code terraform init} run.
   */
  Terraform httpTerraform(String state, String wait, String body) throws Exception {
    Terraform tf = new Terraform(Files.createTempDirectory("bench-" + state));
    tf.writeConfig(Terraform.httpBackend(stateUrl(0, state), wait) + body);
    tf.env("TF_HTTP_USERNAME", USER)
        .env("TF_HTTP_PASSWORD", runnerToken())
        .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", ca);
    tf.run("init", "-input=false").assertOk();
    return tf;
  }

  /**
   * A kubeconfig for stock Terraform's {@code kubernetes} backend: a ServiceAccount of its own
   * allowed what that backend does (Secrets and Leases in the namespace), its token for the API
   * server.
   */
  Path stockKubeconfig() throws IOException {
    return StockTerraform.kubeconfig(
        cluster,
        namespace,
        "stock-terraform",
        Files.createTempDirectory("bench-stock").resolve("kubeconfig"));
  }

  /**
   * Deletes the namespace while the operator still runs (it removes its finalizers), waits until it
   * is gone (at most two minutes), then stops the operator.
   */
  @Override
  public void close() {
    try {
      admin.namespaces().withName(namespace).delete();
      long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(2);
      while (admin.namespaces().withName(namespace).get() != null) {
        if (System.nanoTime() > deadline) {
          System.out.println("note: namespace " + namespace + " not gone after 2 minutes");
          break;
        }
        Thread.sleep(500);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException e) {
      System.out.println("note: deleting namespace " + namespace + ": " + e.getMessage());
    } finally {
      operator.close();
    }
  }

  /** Waits until the replica's backend accepts connections (it starts after /healthz answers). */
  private static void awaitListening(ClusterOperator.Replica replica) throws InterruptedException {
    URI url = URI.create(replica.backendUrl());
    long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(2);
    while (true) {
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress(url.getHost(), url.getPort()), 1000);
        return;
      } catch (IOException e) {
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException(
              "the backend of "
                  + replica.podName()
                  + " does not accept connections:\n"
                  + replica.tail());
        }
        Thread.sleep(200);
      }
    }
  }
}
