package io.leasehold.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.bench.HolderTimeline.Change;
import java.util.List;
import org.junit.jupiter.api.Test;

class HolderTimelineTest {

  private static final long MS = 1_000_000;

  @Test
  void holdsAndGapsFromReleaseToNextGrantOrZeroWhenHandedOnInOneWrite() {
    List<Change> changes =
        List.of(
            new Change(0, "before"),
            new Change(10 * MS, ""),
            new Change(100 * MS, "a"),
            new Change(300 * MS, ""),
            new Change(325 * MS, "b"),
            new Change(400 * MS, "c"),
            new Change(450 * MS, ""));
    HolderTimeline.Summary s = HolderTimeline.summarize(changes, 50 * MS);
    assertThat(s.holders()).isEqualTo(3);
    assertThat(s.heldSeconds())
        .isCloseTo(0.200 + 0.075 + 0.050, org.assertj.core.data.Offset.offset(1e-9));
    assertThat(s.gapsMs()).containsExactly(0.0, 25.0);
  }

  @Test
  void aHolderFromBeforeTheStartCountsOnlyFromTheStart() {
    List<Change> changes =
        List.of(new Change(0, "a"), new Change(100 * MS, ""), new Change(130 * MS, "b"));
    HolderTimeline.Summary s = HolderTimeline.summarize(changes, 40 * MS);
    assertThat(s.holders()).isEqualTo(1);
    assertThat(s.heldSeconds()).isCloseTo(0.060, org.assertj.core.data.Offset.offset(1e-9));
    assertThat(s.gapsMs()).containsExactly(30.0);
  }
}
