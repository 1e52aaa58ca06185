package io.leasehold.support;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The binaries the end-to-end tests run: {@code terraform}, {@code tofu}, {@code kubectl}, and
 * Prometheus's {@code promtool} and {@code prometheus}. Each is looked for on the PATH ({@code
 * tofu} also where {@code hack/tools.sh tofu} builds it: {@code $LEASEHOLD_CACHE/bin/current}, by
 * default {@code ~/.cache/leasehold/bin/current}) and must run its version command. A test that
 * needs one that is missing fails, with a message naming it and how the project installs it: it
 * never passes by skipping.
 *
 * <p>Where {@code terraform} is not on the PATH, the tests written for it run with {@code tofu}
 * instead (same protocol, same state format), and say so once in the output.
 */
public final class Binaries {

  /** A binary found: where it is and the first line of its version. */
  public record Found(String name, Path path, String version) {
    /** Whether this is OpenTofu (standing in for terraform, or asked for). */
    public boolean isTofu() {
      return version.startsWith("OpenTofu");
    }
  }

  private static final Map<String, Optional<Found>> FOUND = new ConcurrentHashMap<>();
  private static volatile boolean told;

  private Binaries() {}

  /** OpenTofu's {@code tofu}; fails the test when it is not found. */
  public static Found tofu() {
    return find("tofu")
        .orElseThrow(
            () ->
                missing(
                    "tofu",
                    "not on the PATH nor at "
                        + cacheBin().resolve("tofu")
                        + ". Build it with `hack/tools.sh tofu` (from OpenTofu's Go module; needs"
                        + " Go, and the Go module proxy the first time), or put tofu on the"
                        + " PATH"));
  }

  /** {@code kubectl}; fails the test when it is not on the PATH. */
  public static Found kubectl() {
    return find("kubectl")
        .orElseThrow(
            () ->
                missing(
                    "kubectl",
                    "not on the PATH. Install it (`apt-get install kubectl`, or the release"
                        + " binary from https://kubernetes.io/docs/tasks/tools/) onto the PATH"));
  }

  /** Prometheus's {@code promtool}; fails the test when it is not on the PATH. */
  public static Found promtool() {
    return find("promtool").orElseThrow(() -> missing("promtool", PROMETHEUS_HOW));
  }

  /** The {@code prometheus} server; fails the test when it is not on the PATH. */
  public static Found prometheus() {
    return find("prometheus").orElseThrow(() -> missing("prometheus", PROMETHEUS_HOW));
  }

  private static final String PROMETHEUS_HOW =
      "not on the PATH. Install it with `hack/tools.sh prometheus` (Debian's prometheus package,"
          + " which has promtool and prometheus: apt-get, as root or with sudo; hack/test.sh runs"
          + " it), or put Prometheus 2.42 or newer (https://prometheus.io/download/) on the PATH";

  /**
   * The binary the Terraform tests run: {@code terraform} from the PATH, else {@code tofu} (saying
   * so once); fails the test when neither is found.
   */
  public static Found terraform() {
    Optional<Found> terraform = find("terraform");
    if (terraform.isPresent()) {
      return terraform.get();
    }
    Optional<Found> tofu = find("tofu");
    if (tofu.isEmpty()) {
      throw missing(
          "terraform",
          "not on the PATH, and neither is tofu (nor at "
              + cacheBin().resolve("tofu")
              + "). Install Terraform from HashiCorp"
              + " (https://developer.hashicorp.com/terraform/install) onto the PATH, or build tofu"
              + " with `hack/tools.sh tofu`: the Terraform tests then run with tofu instead");
    }
    if (!told) {
      told = true;
      System.out.println(
          "terraform is not on the PATH: the Terraform tests run with "
              + tofu.get().version()
              + " ("
              + tofu.get().path()
              + ") instead");
    }
    return tofu.get();
  }

  /**
   * HashiCorp's {@code terraform} itself, for a test of what only it does ({@code why}): tofu does
   * not stand in. Fails the test, saying why, when it is not on the PATH.
   */
  public static Found hashicorpTerraform(String why) {
    Optional<Found> terraform = find("terraform").filter(f -> !f.isTofu());
    return terraform.orElseThrow(
        () ->
            missing(
                "HashiCorp terraform",
                "not on the PATH, and tofu cannot stand in: "
                    + why
                    + ". Install Terraform from HashiCorp"
                    + " (https://developer.hashicorp.com/terraform/install) onto the PATH"));
  }

  /**
   * Readies the environment of a terraform or tofu process: a CLI configuration file named in
   * {@code TF_CLI_CONFIG_FILE} that does not exist is dropped (tofu warns of it on its standard
   * output, before the JSON of {@code state pull}).
   */
  public static void environment(Map<String, String> env) {
    String config = env.get("TF_CLI_CONFIG_FILE");
    if (config != null && !Files.isRegularFile(Path.of(config))) {
      env.remove("TF_CLI_CONFIG_FILE");
    }
  }

  /** Where {@code hack/tools.sh} puts the binaries it builds. */
  public static Path cacheBin() {
    String cache = System.getenv("LEASEHOLD_CACHE");
    Path root =
        cache == null || cache.isBlank()
            ? Path.of(System.getProperty("user.home"), ".cache", "leasehold")
            : Path.of(cache);
    return root.resolve("bin").resolve("current");
  }

  private static Optional<Found> find(String name) {
    return FOUND.computeIfAbsent(name, Binaries::look);
  }

  private static Optional<Found> look(String name) {
    List<Path> candidates = new ArrayList<>();
    String path = System.getenv("PATH");
    if (path != null) {
      for (String dir : path.split(File.pathSeparator)) {
        if (!dir.isEmpty()) {
          candidates.add(Path.of(dir, name));
        }
      }
    }
    if (name.equals("tofu")) {
      candidates.add(cacheBin().resolve(name));
    }
    for (Path candidate : candidates) {
      if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
        Optional<String> version = version(candidate, name);
        if (version.isPresent()) {
          return Optional.of(new Found(name, candidate.toAbsolutePath(), version.get()));
        }
      }
    }
    return Optional.empty();
  }

  /** The first line of its version command, when it runs and answers. */
  private static Optional<String> version(Path binary, String name) {
    boolean prometheus = name.equals("promtool") || name.equals("prometheus");
    List<String> command =
        new ArrayList<>(List.of(binary.toString(), prometheus ? "--version" : "version"));
    if (name.equals("kubectl")) {
      command.add("--client");
    }
    try {
      ProcessBuilder pb = new ProcessBuilder(command);
      if (prometheus) {
        // Prometheus 2.x prints its version on standard error.
        pb.redirectErrorStream(true);
      } else {
        pb.redirectError(ProcessBuilder.Redirect.DISCARD);
      }
      environment(pb.environment());
      Process p = pb.start();
      p.getOutputStream().close();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return Optional.empty();
      }
      if (p.exitValue() != 0) {
        return Optional.empty();
      }
      return out.lines()
          .map(String::trim)
          .filter(
              l ->
                  l.startsWith("Terraform v")
                      || l.startsWith("OpenTofu v")
                      || l.startsWith("Client Version")
                      || l.startsWith(name + ", version"))
          .findFirst();
    } catch (IOException e) {
      return Optional.empty();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return Optional.empty();
    }
  }

  private static AssertionError missing(String name, String why) {
    return new AssertionError(name + " is needed by this test and was not found: " + why + ".");
  }
}
