package io.leasehold.bench;

import java.util.List;

/**
 * One benchmark of the suite. {@link #run} measures once, on a fresh embedded API (or, for those
 * that {@link #needsCluster()}, in a fresh namespace of the real control plane), and returns its
 * figures; {@link Bench} repeats it and reports the median of each figure.
 */
interface Benchmark {

  /** Short id used by {@code --only}, for example {@code handoff}. */
  String id();

  /** Whether it runs on the real control plane of {@code --cluster DIR}. */
  default boolean needsCluster() {
    return false;
  }

  /** Heading in the report. */
  String title();

  /** What is measured and against what, as a Markdown paragraph. */
  String description(BenchSettings settings);

  List<Figure> run(BenchSettings settings) throws Exception;
}
