package io.leasehold.support;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs the real {@code kubectl} against a kubeconfig; fails the test when it is not found. */
public final class Kubectl {

  private final Path kubeconfig;

  public Kubectl(Path kubeconfig) {
    this.kubeconfig = kubeconfig;
  }

  /** Runs kubectl to completion (at most a minute); stdout and stderr are kept apart. */
  public Result run(String... args) throws IOException, InterruptedException {
    Process p = start(args);
    p.getOutputStream().close();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    Thread errors = new Thread(() -> copy(p.getErrorStream(), err));
    errors.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(1, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      throw new IllegalStateException("kubectl " + String.join(" ", args) + " timed out");
    }
    errors.join();
    return new Result(
        String.join(" ", args), p.exitValue(), out, err.toString(StandardCharsets.UTF_8));
  }

  /** Runs kubectl with {@code input} on its standard input. */
  public Result runWithInput(String input, String... args)
      throws IOException, InterruptedException {
    Process p = start(args);
    p.getOutputStream().write(input.getBytes(StandardCharsets.UTF_8));
    p.getOutputStream().close();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    Thread errors = new Thread(() -> copy(p.getErrorStream(), err));
    errors.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(1, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      throw new IllegalStateException("kubectl " + String.join(" ", args) + " timed out");
    }
    errors.join();
    return new Result(
        String.join(" ", args), p.exitValue(), out, err.toString(StandardCharsets.UTF_8));
  }

  /** Starts kubectl without waiting for it (for {@code get -w}, {@code wait}). */
  public Process start(String... args) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(Binaries.kubectl().path().toString());
    command.add("--kubeconfig=" + kubeconfig.toAbsolutePath());
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command);
    pb.environment().remove("KUBECONFIG");
    return pb.start();
  }

  private static void copy(InputStream in, ByteArrayOutputStream out) {
    try {
      in.transferTo(out);
    } catch (IOException e) {
      // The process ended; what was read is kept.
    }
  }

  public record Result(String command, int exitCode, String output, String errors) {
    public Result assertOk() {
      if (exitCode != 0) {
        throw new AssertionError(
            "kubectl " + command + " failed (" + exitCode + "):\n" + output + errors);
      }
      return this;
    }
  }
}
