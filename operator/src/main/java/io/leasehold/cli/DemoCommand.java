package io.leasehold.cli;

import java.util.Optional;
import java.util.concurrent.Callable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code demo}: the two-engineers race, on the embedded API, in one command. */
@Command(
    name = "demo",
    mixinStandardHelpOptions = true,
    description = {
      "Replays the two-engineers race on an in-memory Kubernetes API: two applies on one state at"
          + " once, serialized by the lock; then the same with -lock=false, where the losing write"
          + " is refused instead of silently lost.",
      "Uses the real terraform when it is on the PATH, and the requests terraform sends otherwise."
    })
final class DemoCommand implements Callable<Integer> {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(
      names = "--terraform",
      paramLabel = "PATH",
      defaultValue = "terraform",
      description = "The terraform binary (default: terraform on the PATH).")
  String terraform;

  @Override
  public Integer call() throws Exception {
    Optional<LocalBuild> local = LocalBuild.find();
    if (local.isEmpty()) {
      return LocalBuild.refuse(spec.commandLine(), "demo");
    }
    // The demo's output is its story: library INFO lines on the terminal would interleave with
    // it. Warnings still show; LEASEHOLD_LOG_LEVEL chooses otherwise.
    Logger root = LoggerFactory.getLogger(Logger.ROOT_LOGGER_NAME);
    ch.qos.logback.classic.Level before = null;
    if (System.getenv("LEASEHOLD_LOG_LEVEL") == null
        && root instanceof ch.qos.logback.classic.Logger logback) {
      before = logback.getLevel();
      logback.setLevel(ch.qos.logback.classic.Level.WARN);
    }
    try {
      return local.get().demo(spec.commandLine().getOut(), terraform);
    } finally {
      if (before != null) {
        ((ch.qos.logback.classic.Logger) root).setLevel(before);
      }
    }
  }
}
