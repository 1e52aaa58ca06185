package io.leasehold.support;

import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@link OperatorProcess} in a JVM of its own, with a given {@code -Xmx} and a GC log, against an
 * {@link EmbeddedKubernetes} running in this JVM: what it measures is the operator's memory alone.
 */
public final class ChildOperator implements AutoCloseable {

  private static final Duration START_TIMEOUT = Duration.ofMinutes(2);
  private static final Duration REPLY_TIMEOUT = Duration.ofMinutes(1);

  /** A GC log line's heap before and after: {@code 123M->45M(384M)}. */
  private static final Pattern HEAP_CHANGE =
      Pattern.compile("(\\d+)([KMG])->(\\d+)([KMG])\\((\\d+)([KMG])\\)");

  private final Process process;
  private final Path dir;
  private final Path gcLog;
  private final Path stderr;
  private final String xmx;
  private final Writer stdin;
  private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
  private final java.util.Deque<String> otherOutput = new java.util.ArrayDeque<>();
  private final String url;
  private long gcLogMark;

  private ChildOperator(EmbeddedKubernetes api, String xmx, long maxStateBytes) throws IOException {
    this.xmx = xmx;
    this.dir = Files.createTempDirectory("child-operator");
    this.gcLog = dir.resolve("gc.log");
    this.stderr = dir.resolve("stderr.log");
    Path kubeconfig = dir.resolve("kubeconfig");
    api.writeKubeconfig(kubeconfig);
    String java =
        ProcessHandle.current()
            .info()
            .command()
            .orElseThrow(() -> new IllegalStateException("cannot tell this JVM's java command"));
    List<String> command = new ArrayList<>();
    command.add(java);
    command.add("-Xmx" + xmx);
    command.add("-Xlog:gc:file=" + gcLog);
    command.add("-XX:+ExitOnOutOfMemoryError");
    command.add("-cp");
    command.add(System.getProperty("java.class.path"));
    command.add(OperatorProcess.class.getName());
    command.add(kubeconfig.toString());
    command.add(Long.toString(maxStateBytes));
    process =
        new ProcessBuilder(command)
            .redirectError(stderr.toFile())
            .redirectOutput(ProcessBuilder.Redirect.PIPE)
            .start();
    stdin = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader out =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line = out.readLine(); line != null; line = out.readLine()) {
                  if (line.startsWith(OperatorProcess.BACKEND_LINE)
                      || line.startsWith(OperatorProcess.HEAP_LINE)) {
                    lines.add(line);
                  } else {
                    synchronized (otherOutput) {
                      otherOutput.addLast(line);
                      if (otherOutput.size() > 20) {
                        otherOutput.removeFirst();
                      }
                    }
                  }
                }
              } catch (IOException e) {
                // The process went away; callers see it through isAlive().
              }
            },
            "child-operator-stdout");
    reader.setDaemon(true);
    reader.start();
    String first;
    try {
      first = await(OperatorProcess.BACKEND_LINE, START_TIMEOUT);
    } catch (RuntimeException e) {
      process.destroyForcibly();
      throw e;
    }
    url = first.substring(OperatorProcess.BACKEND_LINE.length()).trim();
  }

  /**
   * Starts the operator and backend in a child JVM with heap limit {@code xmx} (for example {@code
   * 384m}); returns once the backend serves.
   */
  public static ChildOperator start(EmbeddedKubernetes api, String xmx, long maxStateBytes)
      throws IOException {
    return new ChildOperator(api, xmx, maxStateBytes);
  }

  /** Base URL of the state addresses: append {@code NS/NAME}. */
  public String url() {
    return url;
  }

  public String xmx() {
    return xmx;
  }

  /** Heap in use in the child right after two full GCs: its live memory now. */
  public long heapAfterGc() {
    send("gc");
    String line = await(OperatorProcess.HEAP_LINE, REPLY_TIMEOUT);
    return Long.parseLong(line.substring(OperatorProcess.HEAP_LINE.length()).trim());
  }

  /** Makes {@link #peakHeapAfterGc} look only at collections from now on. */
  public void markGcLog() {
    try {
      gcLogMark = Files.exists(gcLog) ? Files.size(gcLog) : 0;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * The largest heap left after any collection since {@link #markGcLog} (since the start without
   * it), from the child's GC log: the peak of its live memory, in bytes. Empty when no collection
   * ran in that time.
   */
  public java.util.OptionalLong peakHeapAfterGc() {
    checkAlive("reading the GC log");
    byte[] log;
    try {
      log = Files.readAllBytes(gcLog);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the child's GC log " + gcLog, e);
    }
    int from = (int) Math.min(gcLogMark, log.length);
    String text = new String(log, from, log.length - from, StandardCharsets.UTF_8);
    long peak = -1;
    Matcher m = HEAP_CHANGE.matcher(text);
    while (m.find()) {
      peak = Math.max(peak, bytes(m.group(3), m.group(4)));
    }
    return peak < 0 ? java.util.OptionalLong.empty() : java.util.OptionalLong.of(peak);
  }

  private static long bytes(String number, String unit) {
    long n = Long.parseLong(number);
    return switch (unit) {
      case "K" -> n * 1024;
      case "M" -> n * 1024 * 1024;
      default -> n * 1024 * 1024 * 1024;
    };
  }

  /**
   * After a request to the child failed: fails, with the tail of the child's output, when the child
   * exited or exits within a few seconds (a JVM dying of OutOfMemoryError drops its connections
   * before it is gone).
   */
  public void checkExitedAfterFailure(String doing) {
    try {
      process.waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    checkAlive(doing);
  }

  /** Fails, with the tail of the child's stderr, when the child is no longer running. */
  public void checkAlive(String doing) {
    if (!process.isAlive()) {
      throw new IllegalStateException(
          "the child operator (-Xmx"
              + xmx
              + ") exited with "
              + process.exitValue()
              + " while "
              + doing
              + "; its stderr ends with:\n"
              + stderrTail());
    }
  }

  /**
   * The last lines the child wrote to stderr, and to stdout besides its answers (the JVM reports a
   * fatal OutOfMemoryError there).
   */
  public String stderrTail() {
    String out;
    synchronized (otherOutput) {
      out = otherOutput.isEmpty() ? "" : "\n(stdout:)\n" + String.join("\n", otherOutput);
    }
    try {
      if (!Files.exists(stderr)) {
        return "(nothing)" + out;
      }
      List<String> all = Files.readAllLines(stderr, StandardCharsets.UTF_8);
      if (all.isEmpty()) {
        return "(nothing)" + out;
      }
      return String.join("\n", all.subList(Math.max(0, all.size() - 40), all.size())) + out;
    } catch (IOException | UncheckedIOException e) {
      return "(cannot read " + stderr + ": " + e.getMessage() + ")" + out;
    }
  }

  private void send(String command) {
    checkAlive("sending '" + command + "'");
    try {
      stdin.write(command + "\n");
      stdin.flush();
    } catch (IOException e) {
      checkAlive("sending '" + command + "'");
      throw new UncheckedIOException("cannot write to the child operator", e);
    }
  }

  private String await(String prefix, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      String line;
      try {
        line = lines.poll(200, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted waiting for the child operator", e);
      }
      if (line != null && line.startsWith(prefix)) {
        return line;
      }
      if (line == null) {
        checkAlive("waiting for '" + prefix.trim() + "'");
        if (System.nanoTime() > deadline) {
          throw new IllegalStateException(
              "the child operator printed no '"
                  + prefix.trim()
                  + "' within "
                  + timeout.toSeconds()
                  + " s; its stderr ends with:\n"
                  + stderrTail());
        }
      }
    }
  }

  /** Kills the child at once, as a crash or an OOM kill would: no shutdown of any kind. */
  public void kill() {
    process.destroyForcibly();
    try {
      process.waitFor(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    try {
      stdin.close();
    } catch (IOException e) {
      // Already gone.
    }
    try {
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    try (var files = Files.list(dir)) {
      for (Path f : files.toList()) {
        Files.deleteIfExists(f);
      }
      Files.deleteIfExists(dir);
    } catch (IOException e) {
      // Temporary files only.
    }
  }
}
