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

  public boolean isHold() {
    return Boolean.TRUE.equals(hold);
  }

  public void setHold(Boolean hold) {
    this.hold = hold;
  }
}
