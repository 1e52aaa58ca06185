package io.leasehold.cli;

import io.leasehold.ops.Shutdown;
import java.time.Duration;
import picocli.CommandLine.Option;

/** {@code run}'s options for stopping a replica without dropping requests. */
final class ShutdownOptions {

  @Option(
      names = "--shutdown-delay",
      paramLabel = "DURATION",
      defaultValue = "0s",
      converter = DurationConverter.class,
      description =
          "On SIGTERM, report not ready and keep serving this long before draining, so the"
              + " Service stops sending new requests here first (default 0s; the Helm chart sets"
              + " it).")
  Duration delay;

  @Option(
      names = "--drain-timeout",
      paramLabel = "DURATION",
      defaultValue = "20s",
      converter = DurationConverter.class,
      description =
          "Then refuse new backend requests (503, retried by Terraform) and wait this long at most"
              + " for those in progress to finish (default 20s).")
  Duration drainTimeout;

  Shutdown shutdown() {
    return new Shutdown(delay, drainTimeout);
  }
}
