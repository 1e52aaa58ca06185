package io.leasehold.cluster;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Replicas of the operator, each the production jar in a process of its own, run as the chart runs
 * them: the chart's ServiceAccount (a token bound to a pod of its own on the fake node), the
 * chart's arguments, leader election on a real Lease. Each replica watches only the test's
 * namespace and serves the backend over HTTPS on a port of its own on 127.0.0.1.
 */
public final class ClusterOperator implements AutoCloseable {

  /** The API server's own audience: what an in-cluster pod's token is for. */
  public static final String API_AUDIENCE = "https://kubernetes.default.svc.cluster.local";

  private final RealCluster cluster;
  private final ChartInstall chart;
  private final String namespace;
  private final List<String> watched;
  private final List<String> extraArgs;
  private final String group;
  private final Path workDir;
  private final List<Replica> replicas = new ArrayList<>();

  private ClusterOperator(
      RealCluster cluster, ChartInstall chart, List<String> watched, List<String> extraArgs) {
    this.cluster = cluster;
    this.chart = chart;
    this.namespace = watched.get(0);
    this.watched = List.copyOf(watched);
    this.extraArgs = List.copyOf(extraArgs);
    this.group = "op-" + UUID.randomUUID().toString().substring(0, 6);
    try {
      Path base = Path.of(System.getProperty("leasehold.clusterLogs", "target/real-cluster"));
      Files.createDirectories(base);
      this.workDir = Files.createTempDirectory(base.toAbsolutePath(), namespace + "-");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Starts {@code count} replicas watching {@code namespace}, and waits until one leads. */
  public static ClusterOperator start(
      RealCluster cluster, ChartInstall chart, String namespace, int count) {
    return start(cluster, chart, List.of(namespace), count, List.of());
  }

  /**
   * Starts {@code count} replicas watching {@code watched} (the first is {@link #namespace()}),
   * each run with the chart's arguments followed by {@code extraArgs}.
   */
  public static ClusterOperator start(
      RealCluster cluster,
      ChartInstall chart,
      List<String> watched,
      int count,
      List<String> extraArgs) {
    ClusterOperator operator = new ClusterOperator(cluster, chart, watched, extraArgs);
    // Started together, then waited for: the JVMs start in parallel.
    for (int i = 0; i < count; i++) {
      Replica replica = operator.new Replica(i, List.of());
      operator.replicas.add(replica);
      replica.launch();
    }
    for (Replica replica : operator.replicas) {
      replica.awaitHealthy(Duration.ofMinutes(2));
    }
    return operator;
  }

  /** Starts one more replica (a new pod, a new process). */
  public Replica add() {
    return add(List.of());
  }

  /** Starts one more replica with {@code moreArgs} after the group's arguments. */
  public Replica add(List<String> moreArgs) {
    Replica replica = new Replica(replicas.size(), moreArgs);
    replicas.add(replica);
    replica.start();
    return replica;
  }

  /** The replica the leader-election Lease names, if one does and it is one of this group's. */
  public java.util.Optional<Replica> leader() {
    var lease =
        cluster.admin().leases().inNamespace(ChartInstall.NAMESPACE).withName(leaderLease());
    var current = lease.get();
    String holder =
        current == null || current.getSpec() == null ? null : current.getSpec().getHolderIdentity();
    return replicas.stream().filter(r -> r.podName().equals(holder)).findFirst();
  }

  public Replica replica(int i) {
    return replicas.get(i);
  }

  public List<Replica> replicas() {
    return List.copyOf(replicas);
  }

  public String namespace() {
    return namespace;
  }

  /** The leader-election Lease of this group of replicas. */
  public String leaderLease() {
    return group + "-leader";
  }

  /** The backend's CA (PEM), as published in the test namespace for runners. */
  public String caPem(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      ConfigMap ca =
          cluster.admin().configMaps().inNamespace(namespace).withName("leasehold-ca").get();
      if (ca != null && ca.getData() != null && ca.getData().get("ca.crt") != null) {
        return ca.getData().get("ca.crt");
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError(
            "the operator did not publish its CA (ConfigMap leasehold-ca) in " + namespace);
      }
      Thread.sleep(200);
    }
  }

  @Override
  public void close() {
    for (Replica r : replicas) {
      r.kill();
    }
    for (Replica r : replicas) {
      r.deletePod();
    }
  }

  /** One replica: a pod object on the fake node for its identity, and the jar in a process. */
  public final class Replica {
    private final int index;
    private final List<String> moreArgs;
    private final String podName;
    private final Path log;
    private Pod pod;
    private Path kubeconfig;
    private Process process;
    private int httpPort;
    private int managementPort;

    private Replica(int index, List<String> moreArgs) {
      this.index = index;
      this.moreArgs = List.copyOf(moreArgs);
      this.podName = group + "-" + index;
      this.log = workDir.resolve(podName + ".log");
    }

    private void start() {
      launch();
      awaitHealthy(Duration.ofMinutes(2));
    }

    /**
     * Creates the pod (at the first start) and starts the process, without waiting for it. A
     * restart reuses the pod and its token, as the kubelet restarts a container: deleting the pod
     * and creating one of the same name instead races the fake node, which may still be finishing
     * the old pod's deletion by name and delete the new one, invalidating its token.
     */
    private void launch() {
      if (pod == null) {
        createPod();
      }
      startProcess();
    }

    private void createPod() {
      pod =
          cluster
              .admin()
              .pods()
              .inNamespace(ChartInstall.NAMESPACE)
              .resource(
                  new PodBuilder()
                      .withNewMetadata()
                      .withName(podName)
                      .withNamespace(ChartInstall.NAMESPACE)
                      .addToLabels("app.kubernetes.io/name", "leasehold")
                      .addToLabels("leasehold.io/test-replica", group)
                      .endMetadata()
                      .withNewSpec()
                      .withServiceAccountName(chart.serviceAccount())
                      .withNodeName("kwok-node-0")
                      .addNewContainer()
                      .withName("operator")
                      .withImage("leasehold:test")
                      .endContainer()
                      .endSpec()
                      .build())
              .create();
      String token = cluster.podToken(pod, API_AUDIENCE);
      kubeconfig =
          cluster.kubeconfigWithToken(
              workDir.resolve(podName + ".kubeconfig"), token, ChartInstall.NAMESPACE);
    }

    private void startProcess() {
      httpPort = freePort();
      managementPort = freePort();
      List<String> command = new ArrayList<>();
      command.add(javaCommand());
      command.add("-Xmx512m");
      command.add("-XX:+ExitOnOutOfMemoryError");
      command.add("-jar");
      command.add(serverJar().toString());
      for (String arg : chart.operatorArgs()) {
        command.add(rewrite(arg));
      }
      command.add("--http-host=127.0.0.1");
      command.add("--namespace=" + String.join(",", watched));
      command.addAll(extraArgs);
      command.addAll(moreArgs);
      try {
        ProcessBuilder pb =
            new ProcessBuilder(command)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
        Map<String, String> env = pb.environment();
        env.remove("KUBERNETES_SERVICE_HOST");
        env.remove("KUBERNETES_SERVICE_PORT");
        env.put("KUBECONFIG", kubeconfig.toString());
        env.put("POD_NAMESPACE", ChartInstall.NAMESPACE);
        env.put("POD_NAME", podName);
        // A container's hostname is its pod's name: the replica's identity (leader election).
        env.put("HOSTNAME", podName);
        env.put("POD_UID", pod.getMetadata().getUid());
        env.put("LEASEHOLD_LOG_FORMAT", "text");
        env.put("LEASEHOLD_LOG_LEVEL", System.getProperty("leasehold.cluster.logLevel", "INFO"));
        process = pb.start();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }

    private String rewrite(String arg) {
      if (arg.startsWith("--http-port=")) {
        return "--http-port=" + httpPort;
      }
      if (arg.startsWith("--management-port=")) {
        return "--management-port=" + managementPort;
      }
      if (arg.startsWith("--leader-election-namespace=")) {
        return "--leader-election-namespace=" + ChartInstall.NAMESPACE;
      }
      if (arg.startsWith("--leader-election-lease=")) {
        return "--leader-election-lease=" + leaderLease();
      }
      if (arg.startsWith("--tls-self-signed=")) {
        return "--tls-self-signed=" + group + "-tls";
      }
      if (arg.startsWith("--tls-dns-name=")) {
        return arg + ",localhost,127.0.0.1";
      }
      return arg;
    }

    /**
     * Waits until {@code /healthz} answers 200 and the backend accepts connections (the management
     * server answers while the operator still starts).
     */
    public void awaitHealthy(Duration timeout) {
      long deadline = System.nanoTime() + timeout.toNanos();
      HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
      while (true) {
        if (!process.isAlive()) {
          throw new AssertionError(
              "operator replica " + podName + " exited (" + process.exitValue() + "):\n" + tail());
        }
        try {
          HttpResponse<String> r =
              http.send(
                  HttpRequest.newBuilder(
                          URI.create("http://127.0.0.1:" + managementPort + "/healthz"))
                      .timeout(Duration.ofSeconds(2))
                      .build(),
                  HttpResponse.BodyHandlers.ofString());
          if (r.statusCode() == 200 && listening(httpPort)) {
            return;
          }
        } catch (IOException e) {
          // not listening yet
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(e);
        }
        if (System.nanoTime() > deadline) {
          throw new AssertionError("operator replica " + podName + " not healthy:\n" + tail());
        }
        sleep(200);
      }
    }

    private static boolean listening(int port) {
      try (java.net.Socket s = new java.net.Socket()) {
        s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 1_000);
        return true;
      } catch (IOException e) {
        return false;
      }
    }

    /** {@code /readyz}'s answer ("" when it does not answer). */
    public String readiness() {
      HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
      try {
        return http.send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + managementPort + "/readyz"))
                    .timeout(Duration.ofSeconds(2))
                    .build(),
                HttpResponse.BodyHandlers.ofString())
            .body();
      } catch (IOException e) {
        return "";
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return "";
      }
    }

    /** {@code /readyz}'s status code, or -1 when it does not answer. */
    public int readyz() {
      HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
      try {
        return http.send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + managementPort + "/readyz"))
                    .timeout(Duration.ofSeconds(2))
                    .build(),
                HttpResponse.BodyHandlers.discarding())
            .statusCode();
      } catch (IOException e) {
        return -1;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return -1;
      }
    }

    /** The backend's base URL: {@code https://127.0.0.1:PORT}. */
    public String backendUrl() {
      return "https://127.0.0.1:" + httpPort;
    }

    /** The URL of one state on this replica's backend. */
    public String stateUrl(String name) {
      return backendUrl() + "/v1/states/" + namespace + "/" + name;
    }

    public String podName() {
      return podName;
    }

    public boolean alive() {
      return process != null && process.isAlive();
    }

    public long pid() {
      return process.pid();
    }

    /** SIGKILL: the process ends at once, with no chance to hand anything on. */
    public void kill() {
      if (process != null && process.isAlive()) {
        signal("CONT");
        process.destroyForcibly();
        waitFor();
      }
    }

    /** SIGTERM: a graceful stop, as a rolling update does. */
    public void terminate() {
      if (process != null && process.isAlive()) {
        process.destroy();
        waitFor();
      }
    }

    /** SIGSTOP: the process stalls (a long GC pause, a frozen node) until {@link #resume}. */
    public void pause() {
      signal("STOP");
    }

    /** SIGCONT after {@link #pause}. */
    public void resume() {
      signal("CONT");
    }

    /** Starts the replica again after it ended: a new process in the same pod. */
    public void restart() {
      if (alive()) {
        throw new IllegalStateException(podName + " is still running");
      }
      start();
    }

    private void deletePod() {
      pod = null;
      cluster
          .admin()
          .pods()
          .inNamespace(ChartInstall.NAMESPACE)
          .withName(podName)
          .withGracePeriod(0)
          .delete();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (cluster.admin().pods().inNamespace(ChartInstall.NAMESPACE).withName(podName).get()
              != null
          && System.nanoTime() < deadline) {
        sleep(100);
      }
    }

    private void waitFor() {
      try {
        if (!process.waitFor(60, TimeUnit.SECONDS)) {
          process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    private void signal(String name) {
      if (process == null || !process.isAlive()) {
        return;
      }
      try {
        new ProcessBuilder("kill", "-" + name, Long.toString(process.pid()))
            .inheritIO()
            .start()
            .waitFor(10, TimeUnit.SECONDS);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    /** Writes the replica's threads next to its log (jcmd Thread.print); returns the file. */
    public Path threadDump() {
      Path dump = workDir.resolve(podName + "-threads-" + System.currentTimeMillis() + ".txt");
      if (!alive()) {
        return dump;
      }
      try {
        Path jcmd = Path.of(javaCommand()).resolveSibling("jcmd");
        new ProcessBuilder(jcmd.toString(), Long.toString(process.pid()), "Thread.print")
            .redirectErrorStream(true)
            .redirectOutput(dump.toFile())
            .start()
            .waitFor(60, TimeUnit.SECONDS);
      } catch (IOException e) {
        return dump;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return dump;
    }

    /** The last lines of this replica's log. */
    public String tail() {
      try {
        List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
      } catch (IOException e) {
        return "(no log: " + e.getMessage() + ")";
      }
    }

    public Path log() {
      return log;
    }

    @Override
    public String toString() {
      return podName + (index == 0 ? " (first)" : "");
    }
  }

  /** The jar the image runs, from {@code -Dleasehold.serverJar}. */
  public static Path serverJar() {
    String jar = System.getProperty("leasehold.serverJar");
    Path path =
        jar != null
            ? Path.of(jar)
            : RealCluster.projectRoot().resolve("server/target/leasehold-server.jar");
    if (!Files.isRegularFile(path)) {
      throw new AssertionError(
          "the server jar " + path + " is missing: `mvn -B -DskipTests package` builds it");
    }
    return path;
  }

  static String javaCommand() {
    return ProcessHandle.current()
        .info()
        .command()
        .orElseThrow(() -> new IllegalStateException("cannot tell this JVM's java command"));
  }

  static int freePort() {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
