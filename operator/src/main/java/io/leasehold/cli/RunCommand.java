package io.leasehold.cli;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.backend.KubernetesJobPods;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.ManagementServer;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code run}: the operator, against a cluster or on an embedded in-memory API. */
@Command(
    name = "run",
    mixinStandardHelpOptions = true,
    description = {
      "Runs the operator against the current kubeconfig or in-cluster configuration.",
      "With --embedded, starts an in-memory Kubernetes API on 127.0.0.1 first and runs against"
          + " it; nothing is authenticated, so it listens on loopback only."
    })
final class RunCommand implements Callable<Integer> {

  private static final Logger LOG = LoggerFactory.getLogger(RunCommand.class);
  private static final long SHUTDOWN_GRACE_SECONDS = 30;

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(
      names = "--embedded",
      description = "Start an in-memory Kubernetes API on 127.0.0.1 and run against it.")
  boolean embedded;

  @Option(
      names = "--api-port",
      paramLabel = "PORT",
      defaultValue = "0",
      description = "Port of the embedded Kubernetes API (default: a free port).")
  int apiPort;

  @Option(
      names = {"-f", "--filename"},
      paramLabel = "FILE",
      description = "Manifest to apply to the embedded API at start (repeatable; multi-document).")
  List<Path> manifests = new ArrayList<>();

  @Option(
      names = "--kubeconfig-out",
      paramLabel = "FILE",
      description = "Write a kubeconfig for the embedded API to FILE (for kubectl and Terraform).")
  Path kubeconfigOut;

  @Option(
      names = {"-n", "--namespace"},
      paramLabel = "NS",
      split = ",",
      description =
          "Namespace to watch (repeatable or comma-separated; default: all, or"
              + " $WATCH_NAMESPACES).")
  List<String> namespaces = new ArrayList<>();

  @Option(
      names = "--leader-election",
      negatable = true,
      defaultValue = "true",
      fallbackValue = "true",
      description =
          "Elect one active replica on the Lease "
              + LeaseholdOperator.LEADER_LEASE
              + " (default: on; always off with --embedded).")
  boolean leaderElection;

  @Option(
      names = "--leader-election-namespace",
      paramLabel = "NS",
      description =
          "Namespace of the leader-election Lease (default: $POD_NAMESPACE, else the client's"
              + " namespace).")
  String leaderElectionNamespace;

  @Option(
      names = "--http-port",
      paramLabel = "PORT",
      description =
          "Port of the Terraform HTTP backend (default: 8080; with --embedded, a free port).")
  Integer httpPort;

  @Option(
      names = "--http-host",
      paramLabel = "ADDRESS",
      defaultValue = "0.0.0.0",
      description =
          "Address the backend listens on (default 0.0.0.0; always 127.0.0.1 with --embedded).")
  String httpHost;

  @Option(
      names = "--max-state-bytes",
      paramLabel = "BYTES",
      defaultValue = "134217728",
      description = "Largest state a client may write, in bytes (default 128 MiB); larger is 413.")
  long maxStateBytes;

  @Option(
      names = "--max-lock-wait",
      paramLabel = "DURATION",
      defaultValue = "PT15M",
      converter = DurationConverter.class,
      description = "Upper bound of ?wait= on LOCK (default 15m; forms: 30s, 10m, PT15M).")
  Duration maxLockWait;

  @Option(
      names = "--management-port",
      paramLabel = "PORT",
      description =
          "Port of /metrics, /healthz and /readyz (default: 8081; with --embedded, a free port"
              + " on 127.0.0.1).")
  Integer managementPort;

  private final PrometheusMeterRegistry registry =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

  private LeaseholdMetrics metrics() {
    new JvmMemoryMetrics().bindTo(registry);
    new JvmGcMetrics().bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    return new LeaseholdMetrics(registry);
  }

  private ManagementServer management(String host, int port, LeaseholdOperator operator) {
    return ManagementServer.start(host, port, registry, operator::health, operator::readiness);
  }

  @Override
  public Integer call() throws Exception {
    if (!embedded && (!manifests.isEmpty() || kubeconfigOut != null)) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "-f and --kubeconfig-out need --embedded");
    }
    for (Path manifest : manifests) {
      if (!Files.isReadable(manifest)) {
        throw new CommandLine.ParameterException(
            spec.commandLine(), "cannot read manifest " + manifest);
      }
    }
    Thread hook = installShutdownHook();
    try {
      int status = embedded ? runEmbedded() : runInCluster();
      exitStatus = status;
      return status;
    } finally {
      stopped.countDown();
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException shuttingDown) {
        // The hook is running and waits for us; nothing to remove.
      }
    }
  }

  private Set<String> watchedNamespaces() {
    Set<String> result = new LinkedHashSet<>(namespaces);
    String env = System.getenv("WATCH_NAMESPACES");
    if (result.isEmpty() && env != null) {
      for (String ns : env.split(",")) {
        if (!ns.isBlank()) {
          result.add(ns.trim());
        }
      }
    }
    return result;
  }

  private static String identity() {
    String host = System.getenv("HOSTNAME");
    return host != null && !host.isBlank() ? host : "leasehold-" + UUID.randomUUID();
  }

  private int runInCluster() throws InterruptedException {
    try (KubernetesClient client = new KubernetesClientBuilder().build()) {
      Optional<String> electionNamespace = Optional.empty();
      if (leaderElection) {
        String ns = leaderElectionNamespace;
        if (ns == null) {
          ns = System.getenv("POD_NAMESPACE");
        }
        if (ns == null) {
          ns = client.getNamespace() == null ? "default" : client.getNamespace();
        }
        electionNamespace = Optional.of(ns);
      }
      Set<String> watched = watchedNamespaces();
      LOG.info(
          "connecting to {}, watching {}, leader election {}",
          client.getMasterUrl(),
          watched.isEmpty() ? "all namespaces" : watched,
          electionNamespace
              .map(ns -> "on Lease " + ns + "/" + LeaseholdOperator.LEADER_LEASE)
              .orElse("off"));
      try (LeaseholdOperator operator =
              LeaseholdOperator.start(
                  client,
                  new LeaseholdOperator.Options(
                      watched, electionNamespace, identity(), metrics()));
          ManagementServer management =
              management(httpHost, managementPort == null ? 8081 : managementPort, operator);
          HttpBackend backend =
              operator.serveBackend(
                  new KubernetesAccess(client),
                  new KubernetesJobPods(client),
                  new HttpBackend.Config(httpHost, httpPort == null ? 8080 : httpPort, maxLockWait),
                  maxStateBytes)) {
        LOG.info(
            "Terraform HTTP backend at {}; metrics and health on port {}",
            backend.url(),
            management.port());
        awaitShutdown();
      }
    }
    return 0;
  }

  private int runEmbedded() throws InterruptedException {
    PrintWriter out = spec.commandLine().getOut();
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(apiPort);
        KubernetesClient client = api.newClient()) {
      api.installAdmissionPolicies();
      for (Path manifest : manifests) {
        api.apply(manifest);
      }
      if (kubeconfigOut != null) {
        api.writeKubeconfig(kubeconfigOut);
      }
      try (LeaseholdOperator operator =
              LeaseholdOperator.start(
                  client,
                  new LeaseholdOperator.Options(
                      watchedNamespaces(), Optional.empty(), "embedded", metrics()));
          ManagementServer management =
              management("127.0.0.1", managementPort == null ? 0 : managementPort, operator);
          HttpBackend backend =
              operator.serveBackend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", httpPort == null ? 0 : httpPort, maxLockWait),
                  maxStateBytes)) {
        out.println("kubernetes-api: " + api.url());
        out.println("terraform-backend: " + backend.url());
        out.println("metrics: http://127.0.0.1:" + management.port() + "/metrics");
        if (kubeconfigOut != null) {
          out.println("kubeconfig: " + kubeconfigOut.toAbsolutePath());
        }
        out.flush();
        LOG.warn(
            "embedded mode: the Kubernetes API at {} and the Terraform backend at {} are"
                + " unauthenticated and listen on loopback only; the API is in memory and"
                + " everything is lost when this process stops",
            api.url(),
            backend.url());
        awaitShutdown();
      }
    }
    return 0;
  }

  private final CountDownLatch stopRequested = new CountDownLatch(1);
  // 1 until run ends normally: a stop that fails while closing does not exit 0.
  private volatile int exitStatus = 1;
  private final CountDownLatch stopped = new CountDownLatch(1);

  /**
   * Blocks until the process is told to stop (SIGTERM, Ctrl-C) or the thread is interrupted. The
   * shutdown hook then waits for {@link #call()} to close the operator and the API in order.
   */
  private void awaitShutdown() throws InterruptedException {
    stopRequested.await();
  }

  private Thread installShutdownHook() {
    Thread hook =
        new Thread(
            () -> {
              stopRequested.countDown();
              try {
                if (stopped.await(SHUTDOWN_GRACE_SECONDS, java.util.concurrent.TimeUnit.SECONDS)) {
                  // Stopped as asked, everything closed in order: exit with run's status rather
                  // than the signal's (143), which would read as a crash.
                  Runtime.getRuntime().halt(exitStatus);
                }
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "leasehold-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    return hook;
  }
}
