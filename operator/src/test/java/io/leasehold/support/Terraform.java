package io.leasehold.support;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs the real {@code terraform} binary in a working directory, offline; where terraform is not on
 * the PATH, {@code tofu} stands in for it ({@link Binaries#terraform()}). {@link #tofu} runs {@code
 * tofu} itself.
 */
public final class Terraform {

  private final Path dir;
  private final Binaries.Found binary;

  /** terraform (or tofu standing in for it); fails the test when neither is found. */
  public Terraform(Path dir) {
    this(dir, Binaries.terraform());
  }

  private Terraform(Path dir, Binaries.Found binary) {
    this.dir = dir;
    this.binary = binary;
  }

  /** HashiCorp's terraform itself, for a test of what only it does ({@code why}). */
  public static Terraform hashicorp(Path dir, String why) {
    return new Terraform(dir, Binaries.hashicorpTerraform(why));
  }

  /** OpenTofu's tofu; fails the test when it is not found. */
  public static Terraform tofu(Path dir) {
    return new Terraform(dir, Binaries.tofu());
  }

  /** The binary this runs. */
  public Binaries.Found binary() {
    return binary;
  }

  /** A configuration using the kubernetes backend on the given kubeconfig. */
  public void writeKubernetesBackendConfig(Path kubeconfig, String secretSuffix, String body)
      throws IOException {
    String config =
        """
        terraform {
          backend "kubernetes" {
            secret_suffix = "%s"
            config_path   = "%s"
            namespace     = "default"
          }
        }
        %s
        """
            .formatted(secretSuffix, kubeconfig.toAbsolutePath(), body);
    Files.writeString(dir.resolve("main.tf"), config, StandardCharsets.UTF_8);
  }

  /** Writes {@code main.tf} as given. */
  public void writeConfig(String config) throws IOException {
    Files.writeString(dir.resolve("main.tf"), config, StandardCharsets.UTF_8);
  }

  /** The http backend block for a leasehold state address, with an optional {@code ?wait=}. */
  public static String httpBackend(String stateUrl, String wait) {
    return """
        terraform {
          backend "http" {
            address        = "%s"
            lock_address   = "%s/lock%s"
            unlock_address = "%s/lock"
          }
        }
        """
        .formatted(stateUrl, stateUrl, wait == null ? "" : "?wait=" + wait, stateUrl);
  }

  private final Map<String, String> environment = new java.util.HashMap<>();

  /** Sets an environment variable for every later run (TF_HTTP_CLIENT_CA_CERTIFICATE_PEM, say). */
  public Terraform env(String name, String value) {
    environment.put(name, value);
    return this;
  }

  public Path dir() {
    return dir;
  }

  /** Runs it to completion; stdout and stderr are kept apart. */
  public Result run(String... args) throws IOException, InterruptedException {
    Path stderr = Files.createTempFile(dir, "stderr", ".log");
    ProcessBuilder pb = builder(args).redirectErrorStream(false).redirectError(stderr.toFile());
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(5, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      throw new IllegalStateException(binary.name() + " " + String.join(" ", args) + " timed out");
    }
    String err = Files.readString(stderr, StandardCharsets.UTF_8);
    Files.delete(stderr);
    return new Result(binary.name(), p.exitValue(), out, err);
  }

  /** Starts it without waiting; stdout and stderr come together from the process. */
  public Process start(String... args) throws IOException {
    return builder(args).redirectErrorStream(true).start();
  }

  private ProcessBuilder builder(String... args) {
    List<String> command = new ArrayList<>();
    command.add(binary.path().toString());
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile());
    Map<String, String> env = pb.environment();
    Binaries.environment(env);
    env.put("TF_IN_AUTOMATION", "1");
    env.put("TF_INPUT", "0");
    env.put("CHECKPOINT_DISABLE", "1");
    env.put("TF_CLI_ARGS", "-no-color");
    env.putAll(environment);
    return pb;
  }

  public record Result(String binary, int exitCode, String output, String errors) {
    public Result assertOk() {
      if (exitCode != 0) {
        throw new AssertionError(binary + " failed (" + exitCode + "):\n" + output + errors);
      }
      return this;
    }
  }
}
