package io.leasehold.bench;

import io.leasehold.cluster.ClusterOperator;
import io.leasehold.support.Binaries;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Runs the benchmark suite, prints each table as it completes and writes them all, with the command
 * and the machine, to a Markdown report.
 *
 * <p>Run from the project root: {@code mvn -B -Pbench -DskipTests verify} (arguments in {@code
 * -Dbench.args="..."}).
 */
@Command(
    name = "bench",
    mixinStandardHelpOptions = true,
    description = "Runs leasehold's benchmarks and writes BENCHMARKS.md.")
public final class Bench implements Callable<Integer> {

  @Option(
      names = "--repeat",
      defaultValue = "3",
      description =
          "runs of each benchmark; the report gives the median (default ${DEFAULT-VALUE})")
  int repeat;

  @Option(
      names = "--only",
      split = ",",
      description =
          "benchmarks to run, by id: wait, plans, handoff, throughput, scale, size, idle, etcd-size;"
              + " on the real control plane of --cluster: cluster-wait, cluster-throughput,"
              + " cluster-handoff, cluster-etcd-size")
  List<String> only = new ArrayList<>();

  @Option(
      names = "--cluster",
      paramLabel = "DIR",
      description =
          "a real control plane started with `hack/cluster.sh up DIR`: adds the cluster-*"
              + " benchmarks, which run on it")
  Path cluster;

  @Option(
      names = "--cluster-handoffs",
      defaultValue = "30",
      description = "measured Job handoffs on the real control plane (default ${DEFAULT-VALUE})")
  int clusterHandoffs;

  @Option(
      names = "--cluster-run-millis",
      defaultValue = "1000",
      description =
          "how long each runner Job's pod runs on the real control plane's fake node (default"
              + " ${DEFAULT-VALUE})")
  long clusterRunMillis;

  @Option(
      names = "--output",
      defaultValue = "BENCHMARKS.md",
      description = "report file (default ${DEFAULT-VALUE})")
  Path output;

  @Option(names = "--handoffs", defaultValue = "200", description = "measured Job handoffs")
  int handoffs;

  @Option(
      names = "--run-millis",
      defaultValue = "100",
      description = "how long each Job runs in the idle-operator handoff measurement")
  long runMillis;

  @Option(names = "--applies", defaultValue = "8", description = "concurrent terraform applies")
  int applies;

  @Option(
      names = "--states",
      split = ",",
      defaultValue = "100,1000",
      description = "state counts of the scale benchmark")
  List<Integer> states;

  @Option(names = "--jobs", defaultValue = "5", description = "queued Jobs per state (scale)")
  int jobs;

  @Option(
      names = "--sizes",
      split = ",",
      defaultValue = "10240,1048576,16777216",
      description = "raw state sizes in bytes (size); the chart's maxStateBytes is always added")
  List<Integer> sizes;

  @Option(
      names = "--cycles",
      defaultValue = "600",
      description = "LOCK/UNLOCK cycles per lock-throughput case")
  int cycles;

  /** How the harness is started (the {@code bench} profile of the build). */
  static final String COMMAND = "mvn -B -Pbench -DskipTests verify";

  static List<Benchmark> all() {
    return List.of(
        new LockWaitBenchmark(),
        new PlanShareBenchmark(),
        new JobHandoffBenchmark(),
        new LockThroughputBenchmark(),
        new ScaleBenchmark(),
        new StateSizeBenchmark(),
        new IdleConnectionsBenchmark(),
        new EtcdSizingBenchmark(),
        new ClusterLockWaitBenchmark(),
        new ClusterLockThroughputBenchmark(),
        new ClusterJobHandoffBenchmark(),
        new ClusterEtcdSizingBenchmark());
  }

  /** The arguments as given, recorded in the report so the command re-creates it. */
  private List<String> given = List.of();

  public static void main(String[] args) {
    Bench bench = new Bench();
    bench.given = List.of(args);
    int code = new CommandLine(bench).execute(args);
    // Informer and HTTP client threads of finished runs must not keep the JVM alive.
    System.exit(code);
  }

  @Override
  public Integer call() throws Exception {
    BenchSettings settings =
        new BenchSettings(
            handoffs,
            runMillis,
            applies,
            states,
            jobs,
            sizes,
            cycles,
            cluster == null ? null : cluster.toAbsolutePath(),
            clusterHandoffs,
            clusterRunMillis);
    List<Benchmark> selected =
        all().stream()
            .filter(
                b -> only.isEmpty() ? !b.needsCluster() || cluster != null : only.contains(b.id()))
            .toList();
    List<String> needCluster =
        selected.stream().filter(Benchmark::needsCluster).map(Benchmark::id).toList();
    if (cluster == null && !needCluster.isEmpty()) {
      System.err.println(
          needCluster
              + " run on a real control plane: start one with `hack/cluster.sh up DIR` and pass"
              + " --cluster DIR");
      return 2;
    }
    if (!needCluster.isEmpty()) {
      // Before anything runs: a missing cluster or server jar is told now, not after the other
      // benchmarks.
      try {
        ClusterSetup.connect(settings);
        ClusterOperator.serverJar();
      } catch (AssertionError | RuntimeException e) {
        System.err.println(e.getMessage());
        return 2;
      }
    }
    if (selected.isEmpty()) {
      System.err.println(
          "no benchmark matches --only "
              + only
              + "; ids are "
              + all().stream().map(Benchmark::id).collect(Collectors.joining(", ")));
      return 2;
    }
    Instant started = Instant.now();
    StringBuilder header = new StringBuilder();
    header.append("# Benchmarks\n\n");
    header.append("Written by the benchmark harness; do not edit by hand. Re-create with:\n\n");
    String args = String.join(" ", given);
    String command = COMMAND + (args.isEmpty() ? "" : " -Dbench.args=\"" + args + "\"");
    header.append("```\n").append(COMMAND).append("\n```\n\n");
    header.append(
        "The sections titled \"Real control plane\" run on a control plane started with"
            + " `hack/cluster.sh up DIR` (and stopped with `hack/cluster.sh down DIR`):"
            + " `-Dbench.args=\"--cluster DIR\"` runs them with the others, `-Dbench.args=\"--cluster"
            + " DIR --only cluster-wait,cluster-throughput,cluster-handoff\"` runs them alone."
            + " The others run on the embedded API (Fabric8 mock server in CRUD mode, in the"
            + " harness JVM).\n\n");
    header.append(
        "Each figure is the median of the runs, with the lowest and highest beside it. Both sides"
            + " of a comparison run in the same run, one after the other, so their ratio holds"
            + " on a noisy machine. Targets are upper limits on the median. Each section ends"
            + " with when, with which command and on which machine it was measured (with the"
            + " load average as the benchmark started: the machine may be shared); with"
            + " `--only`, the sections of the other benchmarks are kept from the report as it"
            + " was.\n\n");
    // Sections by title; a run of some benchmarks keeps the others' sections as they were.
    Map<String, String> sections = new LinkedHashMap<>();
    if (!only.isEmpty()) {
      sections.putAll(existingSections());
    }
    for (Benchmark b : selected) {
      System.out.printf("%n== %s (%d run(s)) ==%n", b.title(), repeat);
      String machine = machine();
      Map<String, List<Figure>> figures = new LinkedHashMap<>();
      long t0 = System.nanoTime();
      for (int r = 1; r <= repeat; r++) {
        for (Figure f : b.run(settings)) {
          figures.computeIfAbsent(f.name(), k -> new ArrayList<>()).add(f);
        }
        System.out.printf("-- run %d of %d done%n", r, repeat);
      }
      Duration took = Duration.ofNanos(System.nanoTime() - t0);
      String table = table(figures);
      System.out.println(table);
      StringBuilder section = new StringBuilder();
      section.append("## ").append(b.title()).append("\n\n");
      section.append(b.description(settings).strip()).append("\n\n");
      section.append(table).append('\n');
      section
          .append("_")
          .append(repeat)
          .append(" run(s) in ")
          .append(took.truncatedTo(ChronoUnit.SECONDS).toString().substring(2).toLowerCase())
          .append(", started ")
          .append(started.truncatedTo(ChronoUnit.SECONDS))
          .append(", by `")
          .append(command)
          .append("`._\n\n")
          .append(machine)
          .append('\n');
      sections.put(b.title(), section.toString());
      StringBuilder report = new StringBuilder(header);
      all().stream()
          .map(Benchmark::title)
          .filter(sections::containsKey)
          .forEach(t -> report.append(sections.get(t)));
      write(report);
    }
    System.out.println("report written to " + output.toAbsolutePath());
    return 0;
  }

  /** The sections of the report as it is now, by title (none when there is no report yet). */
  private Map<String, String> existingSections() throws IOException {
    Map<String, String> found = new LinkedHashMap<>();
    if (!Files.exists(output)) {
      return found;
    }
    String title = null;
    StringBuilder text = new StringBuilder();
    for (String line : Files.readAllLines(output, StandardCharsets.UTF_8)) {
      if (line.startsWith("## ")) {
        if (title != null) {
          found.put(title, text.toString());
        }
        title = line.substring(3).trim();
        text = new StringBuilder();
      }
      if (title != null) {
        text.append(line).append('\n');
      }
    }
    if (title != null) {
      found.put(title, text.toString());
    }
    return found;
  }

  private void write(StringBuilder report) {
    try {
      Files.writeString(output, report.toString(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write the report to " + output, e);
    }
  }

  static String table(Map<String, List<Figure>> figures) {
    StringBuilder t = new StringBuilder();
    t.append("| figure | median | lowest .. highest | target |\n");
    t.append("|---|---:|---:|---|\n");
    figures.forEach(
        (name, values) -> {
          List<Double> sorted = values.stream().map(Figure::value).sorted().toList();
          double median = median(sorted);
          String unit = values.get(0).unit();
          Double atMost = values.get(0).atMost();
          String target =
              atMost == null
                  ? ""
                  : "at most "
                      + format(atMost, unit)
                      + (median <= atMost ? ": met" : ": **missed**");
          t.append("| ")
              .append(name)
              .append(" | ")
              .append(format(median, unit))
              .append(" | ")
              .append(
                  sorted.size() == 1
                      ? "(1 run)"
                      : format(sorted.get(0), unit)
                          + " .. "
                          + format(sorted.get(sorted.size() - 1), unit))
              .append(" | ")
              .append(target)
              .append(" |\n");
        });
    return t.toString();
  }

  /** The {@code p}th percentile (nearest rank) of sorted values. */
  static double percentile(List<Double> sorted, int p) {
    if (sorted.isEmpty()) {
      throw new IllegalStateException("nothing was measured");
    }
    int index = (int) Math.ceil(p / 100.0 * sorted.size()) - 1;
    return sorted.get(Math.max(0, Math.min(sorted.size() - 1, index)));
  }

  static double median(List<Double> sorted) {
    int n = sorted.size();
    return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
  }

  static String format(double value, String unit) {
    String number;
    double abs = Math.abs(value);
    if (abs >= 100 || value == Math.rint(value) && abs < 1e6) {
      number = String.format(Locale.ROOT, "%,.0f", value);
    } else if (abs >= 10) {
      number = String.format(Locale.ROOT, "%.1f", value);
    } else {
      number = String.format(Locale.ROOT, "%.2f", value);
    }
    return unit.isEmpty() ? number : unit.equals("x") ? number + "x" : number + " " + unit;
  }

  /** The machine a section was measured on, and how busy it was as the benchmark started. */
  private static String machine() {
    StringBuilder m = new StringBuilder("Machine: ");
    m.append(firstMatch(Path.of("/proc/cpuinfo"), "model name").orElse("unknown CPU"))
        .append(", ")
        .append(Runtime.getRuntime().availableProcessors())
        .append(" cores available");
    firstMatch(Path.of("/proc/meminfo"), "MemTotal")
        .ifPresent(mem -> m.append(", memory ").append(mem));
    readLine(Path.of("/proc/loadavg"))
        .map(l -> l.split(" "))
        .ifPresent(
            l ->
                m.append(", load average ")
                    .append(l[0])
                    .append(", ")
                    .append(l[1])
                    .append(", ")
                    .append(l[2])
                    .append(" (1, 5, 15 min)"));
    m.append("; ")
        .append(System.getProperty("os.name"))
        .append(' ')
        .append(System.getProperty("os.version"))
        .append("; ")
        .append(System.getProperty("java.vm.name"))
        .append(' ')
        .append(System.getProperty("java.runtime.version"))
        .append(", harness heap limit ")
        .append(Runtime.getRuntime().maxMemory() / 1048576)
        .append(" MiB, JVM flags ")
        .append(ManagementFactory.getRuntimeMXBean().getInputArguments())
        .append("; terraform: ")
        .append(tool(Binaries::terraform))
        .append("; kubectl: ")
        .append(tool(Binaries::kubectl))
        .append(".\n");
    return m.toString();
  }

  private static java.util.Optional<String> readLine(Path file) {
    try {
      return Files.readAllLines(file).stream().findFirst();
    } catch (IOException e) {
      return java.util.Optional.empty();
    }
  }

  private static java.util.Optional<String> firstMatch(Path file, String key) {
    try {
      return Files.readAllLines(file).stream()
          .filter(l -> l.startsWith(key))
          .map(l -> l.substring(l.indexOf(':') + 1).trim())
          .findFirst();
    } catch (IOException e) {
      return java.util.Optional.empty();
    }
  }

  /** A binary's version line and where it is, or why it was not found. */
  static String tool(java.util.function.Supplier<Binaries.Found> find) {
    try {
      Binaries.Found found = find.get();
      return found.version() + " (" + found.path() + ")";
    } catch (AssertionError e) {
      return e.getMessage();
    }
  }
}
