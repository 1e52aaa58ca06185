package io.leasehold.bench;

/** Thrown by a benchmark that cannot run here; the report says why instead of giving figures. */
final class BenchSkipped extends RuntimeException {
  BenchSkipped(String reason) {
    super(reason);
  }
}
