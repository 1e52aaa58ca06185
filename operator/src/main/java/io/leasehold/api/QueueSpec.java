package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class QueueSpec extends KeepsUnknownFields {

  @JsonPropertyDescription(
      "Hold the queue: while true nothing new is admitted, neither runner Jobs nor HTTP-backend"
          + " clients, and the run that holds the lock finishes; those waiting keep their places"
          + " and are served in order once it is false again. Stock clients of the kubernetes"
          + " backend are not held.")
  @Default("false")
  private Boolean hold = false;

  /** How many plans may hold the lock at once when the TerraformState does not say. */
  public static final int DEFAULT_MAX_PARALLEL_PLANS = 4;

  /** The most plans the lock Lease makes room for. */
  public static final int MOST_PARALLEL_PLANS = 16;

  @JsonPropertyDescription(
      "How many plans (a LOCK whose Operation is OperationTypePlan: terraform plan, also"
          + " -refresh-only) may hold the lock at once. Plans never write the state, so they share"
          + " the lock; an apply holds it alone and waits until the running plans end, and a plan"
          + " that arrives after a waiting apply waits behind it. 1 makes plans hold it alone.")
  @Default("4")
  @Min(1)
  @Max(16)
  private Integer maxParallelPlans = DEFAULT_MAX_PARALLEL_PLANS;

  public int getMaxParallelPlans() {
    return maxParallelPlans == null
        ? DEFAULT_MAX_PARALLEL_PLANS
        : Math.max(1, Math.min(MOST_PARALLEL_PLANS, maxParallelPlans));
  }

  public void setMaxParallelPlans(Integer maxParallelPlans) {
    this.maxParallelPlans = maxParallelPlans;
  }

  @JsonPropertyDescription(
      "Skip redundant runs: while true (the default), waiting runner Jobs labelled with the same"
          + " leasehold.io/run-group collapse to the newest. When a newer one of the group is"
          + " queued, the older ones still waiting are never admitted: each is left suspended,"
          + " labelled leasehold.io/skipped=true, with the newer Job named in the annotation"
          + " leasehold.io/skipped-for and in a Skipped Event. Running Jobs, plans"
          + " (leasehold.io/run: plan) and destroys (leasehold.io/run: destroy) are never skipped,"
          + " and a waiting destroy stops the collapse across it. false: nothing is skipped.")
  @Default("true")
  private Boolean skipRedundant = true;

  public boolean isHold() {
    return Boolean.TRUE.equals(hold);
  }

  public void setHold(Boolean hold) {
    this.hold = hold;
  }

  /** Whether redundant runs of a run group are skipped: true unless set to false. */
  public boolean isSkipRedundant() {
    return !Boolean.FALSE.equals(skipRedundant);
  }

  public void setSkipRedundant(Boolean skipRedundant) {
    this.skipRedundant = skipRedundant;
  }
}
