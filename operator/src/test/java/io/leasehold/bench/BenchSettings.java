package io.leasehold.bench;

import java.util.List;

/** Sizes of the benchmarks, from the {@link Bench} command line. */
record BenchSettings(
    int handoffs,
    long runMillis,
    int applies,
    List<Integer> states,
    int jobsPerState,
    List<Integer> stateSizes,
    double cycleSeconds) {}
