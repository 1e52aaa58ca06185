package io.leasehold.bench;

import java.nio.file.Path;
import java.util.List;

/**
 * Sizes of the benchmarks, from the {@link Bench} command line; {@code cluster} is the directory of
 * the real control plane ({@code hack/cluster.sh up DIR}), null when none is given.
 */
record BenchSettings(
    int handoffs,
    long runMillis,
    int applies,
    List<Integer> states,
    int jobsPerState,
    List<Integer> stateSizes,
    int lockCycles,
    Path cluster,
    int clusterHandoffs,
    long clusterRunMillis) {}
