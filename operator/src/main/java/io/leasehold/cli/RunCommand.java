package io.leasehold.cli;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.backend.KubernetesJobPods;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.LockService;
import io.leasehold.operator.CrdCompatibility;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.ManagementServer;
import io.leasehold.ops.Shutdown;
import io.leasehold.tls.BackendTls;
import io.leasehold.tls.CaPublisher;
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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
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

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @CommandLine.Mixin SecurityOptions security = new SecurityOptions();

  @CommandLine.Mixin ShutdownOptions shutdownOptions = new ShutdownOptions();

  @Option(
      names = "--leader-election-lease",
      paramLabel = "NAME",
      defaultValue = LeaseholdOperator.LEADER_LEASE,
      description =
          "Name of the leader-election Lease (default ${DEFAULT-VALUE}); installations sharing a"
              + " namespace need different names.")
  String leaderLease;

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
          "Elect one active replica on the Lease --leader-election-lease (default: on; always"
              + " off with --embedded).")
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
      defaultValue = "33554432",
      description =
          "Largest state a client may write, in bytes (default 32 MiB); larger is 413. A write is"
              + " held in memory: keep the heap at least 6 x this + 128 MiB.")
  long maxStateBytes;

  @Option(
      names = "--max-lock-wait",
      paramLabel = "DURATION",
      defaultValue = "PT15M",
      converter = DurationConverter.class,
      description = "Upper bound of ?wait= on LOCK (default 15m; forms: 30s, 10m, PT15M).")
  Duration maxLockWait;

  @Option(
      names = "--held-lock-wait",
      paramLabel = "DURATION",
      defaultValue = "10s",
      converter = DurationConverter.class,
      description =
          "How long a LOCK without ?wait= waits in line for a held lock before its 423 (default"
              + " 10s; 0s answers at once). The lock goes to a waiting client the moment it is"
              + " free, and a client answered 423 keeps its place for its retries"
              + " (terraform -lock-timeout), so plain clients are never starved.")
  Duration heldLockWait;

  @Option(
      names = "--replicas",
      paramLabel = "N",
      defaultValue = "1",
      description =
          "With --embedded: run N operator replicas in this process against the one embedded"
              + " API, with leader election, each serving the backend on its own port (the first"
              + " on --http-port). Default 1.")
  int replicas;

  @Option(
      names = "--ticket-grace",
      paramLabel = "DURATION",
      defaultValue = "PT30S",
      converter = DurationConverter.class,
      description =
          "How long a ?wait= client whose request ended keeps its place in line for its retry"
              + " with the same lock ID (default 30s).")
  Duration ticketGrace;

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
    // First: it configures the registry's histograms before any meter is registered.
    LeaseholdMetrics metrics = new LeaseholdMetrics(registry);
    new JvmMemoryMetrics().bindTo(registry);
    new JvmGcMetrics().bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    return metrics;
  }

  private LockService.Settings lockSettings() {
    return new LockService.Settings(ticketGrace);
  }

  @Override
  public Integer call() throws Exception {
    Optional<LocalBuild> local = LocalBuild.find();
    if (local.isEmpty()
        && (embedded || !manifests.isEmpty() || kubeconfigOut != null || replicas != 1)) {
      return LocalBuild.refuse(spec.commandLine(), "run --embedded");
    }
    if (!embedded && (!manifests.isEmpty() || kubeconfigOut != null || replicas != 1)) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "-f, --kubeconfig-out and --replicas need --embedded");
    }
    if (replicas < 1 || replicas > 9) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "--replicas must be between 1 and 9, not " + replicas);
    }
    if (ticketGrace.isNegative()) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "--ticket-grace must not be negative");
    }
    for (Path manifest : manifests) {
      if (!Files.isReadable(manifest)) {
        throw new CommandLine.ParameterException(
            spec.commandLine(), "cannot read manifest " + manifest);
      }
    }
    security.validate(spec.commandLine(), embedded);
    shutdown = shutdownOptions.shutdown();
    Thread hook = installShutdownHook();
    try {
      int status = embedded ? runEmbedded(local.get()) : runInCluster();
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
    try (KubernetesClient client =
        new KubernetesClientBuilder()
            .withKubernetesSerialization(new TolerantSerialization())
            .build()) {
      String podNamespace = System.getenv("POD_NAMESPACE");
      if (podNamespace == null) {
        podNamespace = client.getNamespace() == null ? "default" : client.getNamespace();
      }
      Optional<String> electionNamespace = Optional.empty();
      if (leaderElection) {
        electionNamespace =
            Optional.of(leaderElectionNamespace != null ? leaderElectionNamespace : podNamespace);
      }
      Set<String> watched = watchedNamespaces();
      LOG.info(
          "connecting to {}, watching {}, leader election {}",
          client.getMasterUrl(),
          watched.isEmpty() ? "all namespaces" : watched,
          electionNamespace.map(ns -> "on Lease " + ns + "/" + leaderLease).orElse("off"));
      // Until the operator runs, the management server says what it waits for.
      AtomicReference<Supplier<ManagementServer.Check>> health =
          new AtomicReference<>(() -> new ManagementServer.Check(true, "starting"));
      AtomicReference<Supplier<ManagementServer.Check>> readiness =
          new AtomicReference<>(() -> new ManagementServer.Check(false, "starting"));
      try (ManagementServer management =
          ManagementServer.start(
              httpHost,
              managementPort == null ? 8081 : managementPort,
              registry,
              () -> health.get().get(),
              shutdown.readiness(() -> readiness.get().get()))) {
        CrdCompatibility.Verdict crd = awaitUsableCrd(client, podNamespace, readiness);
        if (crd == null) {
          return 0;
        }
        Optional<BackendTls> tls = security.backendTls(client, podNamespace, List.of());
        HttpBackend.Config config =
            new HttpBackend.Config(httpHost, httpPort == null ? 8080 : httpPort, maxLockWait)
                .withHeldLockWait(heldLockWait);
        if (tls.isPresent()) {
          config = config.withTls(tls.get());
        } else {
          LOG.warn(
              "--plain-http: the Terraform backend serves plain HTTP, and runners' tokens cross"
                  + " the network in clear text");
        }
        try (LeaseholdOperator operator =
                LeaseholdOperator.start(
                    client,
                    new LeaseholdOperator.Options(watched, electionNamespace, identity(), metrics())
                        .withLeaderLease(leaderLease)
                        .withLocks(lockSettings()));
            CaPublisher publisher = publisher(client, tls, watched, operator);
            HttpBackend backend =
                Replica.serve(
                    operator,
                    new Replica.Backend(
                        new KubernetesAccess(client, security.tokens()),
                        new KubernetesJobPods(client),
                        config,
                        maxStateBytes))) {
          health.set(operator::health);
          readiness.set(() -> withCrdWarning(operator.readiness(), crd));
          LOG.info(
              "Terraform HTTP backend at {}; metrics and health on port {}",
              backend.url(),
              management.port());
          awaitShutdown();
          drain(backend);
        }
      }
    }
    return 0;
  }

  /** The shutdown sequence's drain of the backend (see {@link Shutdown}). */
  private void drain(HttpBackend backend) {
    shutdown
        .then(
            "drain the Terraform backend",
            left -> {
              int cut = backend.drain(left);
              if (cut > 0) {
                LOG.warn("{} backend requests were still in progress when the drain ended", cut);
              }
            })
        .run();
  }

  private CaPublisher publisher(
      KubernetesClient client,
      Optional<BackendTls> tls,
      Set<String> watched,
      LeaseholdOperator operator) {
    if (tls.isEmpty() || security.publishCa().isEmpty()) {
      return null;
    }
    Set<String> namespaces = new LinkedHashSet<>(watched);
    namespaces.addAll(security.publishNamespaces());
    return CaPublisher.start(
        client,
        tls.get(),
        security.publishCa().get(),
        namespaces,
        watched.isEmpty() ? Optional.of(operator.caches()::stateNamespaces) : Optional.empty());
  }

  private static ManagementServer.Check withCrdWarning(
      ManagementServer.Check check, CrdCompatibility.Verdict crd) {
    return crd.current()
        ? check
        : new ManagementServer.Check(check.ok(), check.detail() + "; warning: " + crd.message());
  }

  /**
   * Checks the TerraformState CRD before starting, and while it is missing or does not serve the
   * version this operator reads, waits, not ready, saying why in /readyz, the log and a Warning
   * Event on this pod, instead of exiting into a crash loop. Returns null when told to stop.
   */
  private CrdCompatibility.Verdict awaitUsableCrd(
      KubernetesClient client,
      String podNamespace,
      AtomicReference<Supplier<ManagementServer.Check>> readiness)
      throws InterruptedException {
    String said = null;
    try (EventRecorder events = new EventRecorder(client, identity())) {
      while (true) {
        CrdCompatibility.Verdict verdict = CrdCompatibility.check(client);
        if (!verdict.message().equals(said) && !verdict.message().isEmpty()) {
          said = verdict.message();
          LOG.warn(said);
          thisPod(podNamespace)
              .ifPresent(
                  pod ->
                      events.warning(pod, "CustomResourceDefinitionOutdated", verdict.message()));
        }
        if (verdict.usable()) {
          return verdict;
        }
        readiness.set(() -> CrdCompatibility.asCheck(verdict));
        if (stopRequested.await(CRD_RETRY_SECONDS, TimeUnit.SECONDS)) {
          return null;
        }
      }
    }
  }

  private static final long CRD_RETRY_SECONDS = 10;

  /** This pod, as the chart names it to the container (POD_NAME, POD_UID). */
  private static Optional<Pod> thisPod(String namespace) {
    String name = System.getenv("POD_NAME");
    String uid = System.getenv("POD_UID");
    if (name == null || name.isBlank()) {
      return Optional.empty();
    }
    return Optional.of(
        new PodBuilder()
            .withNewMetadata()
            .withName(name)
            .withNamespace(namespace)
            .withUid(uid)
            .endMetadata()
            .build());
  }

  private int runEmbedded(LocalBuild local) throws InterruptedException {
    PrintWriter out = spec.commandLine().getOut();
    try (LocalBuild.Api api = local.startApi(apiPort);
        KubernetesClient client = api.newClient()) {
      for (Path manifest : manifests) {
        api.apply(manifest);
      }
      if (kubeconfigOut != null) {
        api.writeKubeconfig(kubeconfigOut);
      }
      Optional<BackendTls> tls =
          security.backendTls(client, "default", List.of("localhost", "127.0.0.1"));
      HttpBackend.Config config =
          new HttpBackend.Config("127.0.0.1", httpPort == null ? 0 : httpPort, maxLockWait)
              .withHeldLockWait(heldLockWait);
      if (tls.isPresent()) {
        config = config.withTls(tls.get());
      }
      HttpBackend.Config base = config;
      List<AutoCloseable> running = new ArrayList<>();
      try {
        List<HttpBackend> backends = new ArrayList<>();
        List<ManagementServer> managements = new ArrayList<>();
        List<LeaseholdOperator> operators = new ArrayList<>();
        for (int i = 1; i <= replicas; i++) {
          boolean first = i == 1;
          Optional<String> election =
              replicas > 1 ? Optional.of(api.namespace()) : Optional.empty();
          String identity = replicas > 1 ? "replica-" + i : "embedded";
          PrometheusMeterRegistry own =
              first ? registry : new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
          LeaseholdMetrics metrics = first ? metrics() : new LeaseholdMetrics(own);
          LeaseholdOperator operator =
              LeaseholdOperator.start(
                  // Each replica with a client of its own, acting as the operator.
                  first ? client : track(running, api.newClient()),
                  new LeaseholdOperator.Options(watchedNamespaces(), election, identity, metrics)
                      .withLocks(lockSettings()));
          running.add(0, operator);
          operators.add(operator);
          HttpBackend backend =
              Replica.serve(
                  operator,
                  new Replica.Backend(
                      Access.NONE, JobPods.NONE, first ? base : base.withPort(0), maxStateBytes));
          running.add(0, backend);
          backends.add(backend);
          ManagementServer management =
              ManagementServer.start(
                  "127.0.0.1",
                  first && managementPort != null ? managementPort : 0,
                  own,
                  operator::health,
                  shutdown.readiness(operator::readiness));
          running.add(0, management);
          managements.add(management);
        }
        if (replicas == 1) {
          CaPublisher publisher = publisher(client, tls, watchedNamespaces(), operators.get(0));
          if (publisher != null) {
            running.add(0, publisher);
          }
        }
        out.println("kubernetes-api: " + api.url());
        for (HttpBackend backend : backends) {
          out.println("terraform-backend: " + backend.url());
        }
        for (ManagementServer management : managements) {
          out.println("metrics: http://127.0.0.1:" + management.port() + "/metrics");
        }
        if (kubeconfigOut != null) {
          out.println("kubeconfig: " + kubeconfigOut.toAbsolutePath());
        }
        out.flush();
        LOG.warn(
            "embedded mode: the Kubernetes API at {} and the Terraform backend{} are"
                + " unauthenticated and listen on loopback only; the API is in memory and"
                + " everything is lost when this process stops",
            api.url(),
            replicas > 1 ? "s (" + replicas + " replicas, leader election on)" : "");
        awaitShutdown();
        for (HttpBackend backend : backends) {
          drain(backend);
        }
      } finally {
        for (AutoCloseable c : running) {
          try {
            c.close();
          } catch (Exception e) {
            LOG.warn("stopping {} failed: {}", c, e.getMessage());
          }
        }
      }
    }
    return 0;
  }

  private static <T extends AutoCloseable> T track(List<AutoCloseable> running, T closeable) {
    running.add(closeable);
    return closeable;
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

  private Shutdown shutdown;

  private Thread installShutdownHook() {
    // The hook waits for the whole shutdown sequence and then the closing of what runs.
    long grace = shutdown.budget().toSeconds() + 15;
    Thread hook =
        new Thread(
            () -> {
              shutdown.begin();
              stopRequested.countDown();
              try {
                if (stopped.await(grace, java.util.concurrent.TimeUnit.SECONDS)) {
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
