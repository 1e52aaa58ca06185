package io.leasehold.bench;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.bench.LockCycles.Timeline;
import org.junit.jupiter.api.Test;

class LockCyclesTest {

  @Test
  void aHandoffIsAGrantAfterAnUnlockAndCountsAcrossReplicasOnlyBetweenTwo() {
    Timeline t = new Timeline();
    t.lockGranted(0); // the first grant follows no unlock: no handoff
    t.unlockSent(0);
    t.lockGranted(0); // same replica
    t.unlockSent(0);
    t.lockGranted(1); // across replicas
    t.unlockSent(1); // the last unlock: no grant follows
    assertThat(t.handoffsMs()).hasSize(2).allSatisfy(ms -> assertThat(ms).isNotNegative());
    assertThat(t.crossReplicaHandoffsMs()).hasSize(1);
  }

  @Test
  void stateNamesAreDistinctForAHundredStates() {
    assertThat(LockCycles.stateName(0)).isEqualTo("tp-aa");
    assertThat(LockCycles.stateName(27)).isEqualTo("tp-bb");
    assertThat(
            java.util.stream.IntStream.range(0, 100)
                .mapToObj(LockCycles::stateName)
                .distinct()
                .count())
        .isEqualTo(100);
  }
}
