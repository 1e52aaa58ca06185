package io.leasehold.queue;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Which waiting Jobs a run group makes redundant, decided from the Jobs in their order alone. */
class RunGroupsTest {

  /** A waiting Job: {@code name}, run group {@code group} (null: none), {@code run} label. */
  private static Job job(String name, String group, String run) {
    JobBuilder b =
        new JobBuilder()
            .withNewMetadata()
            .withName(name)
            .withUid("uid-" + name)
            .addToLabels(RunnerJobs.STATE_LABEL, "network")
            .endMetadata();
    if (group != null) {
      b.editMetadata().addToLabels(RunGroups.GROUP_LABEL, group).endMetadata();
    }
    if (run != null) {
      b.editMetadata().addToLabels(RunGroups.RUN_LABEL, run).endMetadata();
    }
    return b.build();
  }

  /** "skipped->newer" for each skip, oldest skipped first. */
  private static List<String> skips(Job... waiting) {
    return RunGroups.redundant(Arrays.asList(waiting)).stream()
        .map(s -> s.skipped().getMetadata().getName() + "->" + s.newer().getMetadata().getName())
        .toList();
  }

  @Test
  @DisplayName("Applies of one group collapse to the newest: each older one names the newest")
  void appliesCollapseToTheNewest() {
    assertThat(skips(job("a1", "net", null), job("a2", "net", "apply"), job("a3", "net", null)))
        .containsExactly("a1->a3", "a2->a3");
  }

  @Test
  @DisplayName("Groups collapse apart; Jobs without the label, or with an empty one, never do")
  void groupsApartAndUnlabelled() {
    assertThat(
            skips(
                job("n1", null, null),
                job("x1", "net", null),
                job("y1", "dns", null),
                job("e1", "", null),
                job("n2", null, null),
                job("x2", "net", null),
                job("e2", "", null),
                job("y2", "dns", null)))
        .containsExactly("x1->x2", "y1->y2");
  }

  @Test
  @DisplayName(
      "A waiting destroy stops the collapse: the apply before it is not skipped by one after it,"
          + " and the destroy itself is never skipped, whatever its group")
  void destroyStopsTheCollapse() {
    assertThat(
            skips(
                job("a1", "net", null),
                job("a2", "net", null),
                job("d", "net", "destroy"),
                job("a3", "net", null),
                job("a4", "net", null)))
        .containsExactly("a1->a2", "a3->a4");
    assertThat(skips(job("d1", "net", "destroy"), job("d2", "net", "destroy"))).isEmpty();
    // A destroy of another group (or none) stops it too: it may take away what the apply made.
    assertThat(skips(job("a1", "net", null), job("d", null, "destroy"), job("a2", "net", null)))
        .isEmpty();
  }

  @Test
  @DisplayName("Plans are never skipped and never skip: applies collapse across them")
  void plansNeitherSkipNorAreSkipped() {
    assertThat(
            skips(
                job("p1", "net", "plan"),
                job("a1", "net", null),
                job("p2", "net", "plan"),
                job("a2", "net", null),
                job("p3", "net", "plan")))
        .containsExactly("a1->a2");
  }

  @Test
  @DisplayName(
      "A run label that is none of apply, plan and destroy is taken like a destroy: never"
          + " skipped, and no skip across it")
  void unknownRunIsABarrier() {
    assertThat(
            skips(
                job("a1", "net", null),
                job("i", "net", "import"),
                job("a2", "net", null),
                job("a3", "net", null)))
        .containsExactly("a2->a3");
  }

  @Test
  @DisplayName("A Job labelled skipped waits no more: it is in none of the queue's lists")
  void skippedJobsLeaveTheQueue() {
    Job skipped =
        new JobBuilder(job("a1", "net", null))
            .editMetadata()
            .addToLabels(RunGroups.SKIPPED_LABEL, "true")
            .withCreationTimestamp("2026-01-01T00:00:00Z")
            .endMetadata()
            .withNewSpec()
            .withSuspend(true)
            .endSpec()
            .build();
    Job waiting =
        new JobBuilder(job("a2", "net", null))
            .editMetadata()
            .withCreationTimestamp("2026-01-01T00:00:01Z")
            .endMetadata()
            .withNewSpec()
            .withSuspend(true)
            .endSpec()
            .build();
    RunQueue queue = RunQueue.of("network", List.of(skipped, waiting), new Arrivals());
    assertThat(queue.waiting()).containsExactly(waiting);
    assertThat(queue.running()).isEmpty();
    assertThat(queue.unserialized()).isEmpty();
  }
}
