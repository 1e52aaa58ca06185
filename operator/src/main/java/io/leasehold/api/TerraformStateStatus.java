package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.kubernetes.api.model.Condition;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class TerraformStateStatus extends KeepsUnknownFields {

  @JsonPropertyDescription("The metadata.generation this status describes.")
  private Long observedGeneration;

  @JsonPropertyDescription(
      "Who holds the lock, in short: empty when the state is unlocked. Control and invisible"
          + " formatting characters a client put in its LockInfo are shown as '?'.")
  private String holder;

  @JsonPropertyDescription(
      "How many hold the lock: 0 when it is free, 1 for an apply (or any run that holds it"
          + " alone), the number of plans while plans share it.")
  private Integer holders;

  @JsonPropertyDescription(
      "Every plan that holds the lock while plans share it (Operation OperationTypePlan), in the"
          + " order they took it; the first is the Lease's holder as stock Terraform sees it.")
  private List<LockStatus> plans;

  @JsonPropertyDescription(
      "Number waiting for the lock: runner Jobs and HTTP backend clients waiting with ?wait=.")
  private Integer queued;

  @JsonPropertyDescription(
      "The line: runner Jobs and waiting HTTP clients in the order they are served (at most the"
          + " first 50).")
  private List<QueueEntry> queue;

  @JsonPropertyDescription("The runner Job leasehold holds the lock for, while it runs.")
  private String runningJob;

  @JsonPropertyDescription(
      "Jobs labelled for this state that were created without spec.suspend: true. They run"
          + " outside the queue and the lock, so leasehold cannot serialize them.")
  private List<String> unserializedRunners;

  @JsonPropertyDescription("The current lock holder, as recorded on the lock Lease.")
  private LockStatus lock;

  @JsonPropertyDescription("Facts read from the stored Terraform state.")
  private StateFacts state;

  @JsonPropertyDescription("Ready, Locked and Degraded conditions.")
  private List<Condition> conditions = new ArrayList<>();

  public Integer getHolders() {
    return holders;
  }

  public void setHolders(Integer holders) {
    this.holders = holders;
  }

  public List<LockStatus> getPlans() {
    return plans;
  }

  public void setPlans(List<LockStatus> plans) {
    this.plans = plans;
  }

  public Long getObservedGeneration() {
    return observedGeneration;
  }

  public void setObservedGeneration(Long observedGeneration) {
    this.observedGeneration = observedGeneration;
  }

  public String getHolder() {
    return holder;
  }

  /** Set from a client's LockInfo: shown with control and bidi characters replaced. */
  public void setHolder(String holder) {
    this.holder = DisplayText.clean(holder, 256);
  }

  public Integer getQueued() {
    return queued;
  }

  public void setQueued(Integer queued) {
    this.queued = queued;
  }

  public List<QueueEntry> getQueue() {
    return queue;
  }

  public void setQueue(List<QueueEntry> queue) {
    this.queue = queue;
  }

  public String getRunningJob() {
    return runningJob;
  }

  public void setRunningJob(String runningJob) {
    this.runningJob = runningJob;
  }

  public List<String> getUnserializedRunners() {
    return unserializedRunners;
  }

  public void setUnserializedRunners(List<String> unserializedRunners) {
    this.unserializedRunners = unserializedRunners;
  }

  public LockStatus getLock() {
    return lock;
  }

  public void setLock(LockStatus lock) {
    this.lock = lock;
  }

  public StateFacts getState() {
    return state;
  }

  public void setState(StateFacts state) {
    this.state = state;
  }

  public List<Condition> getConditions() {
    return conditions;
  }

  public void setConditions(List<Condition> conditions) {
    this.conditions = conditions == null ? new ArrayList<>() : conditions;
  }

  @Override
  public boolean equals(Object o) {
    if (this == o) {
      return true;
    }
    if (!(o instanceof TerraformStateStatus)) {
      return false;
    }
    TerraformStateStatus that = (TerraformStateStatus) o;
    return Objects.equals(observedGeneration, that.observedGeneration)
        && Objects.equals(holder, that.holder)
        && Objects.equals(holders, that.holders)
        && Objects.equals(plans, that.plans)
        && Objects.equals(queued, that.queued)
        && Objects.equals(queue, that.queue)
        && Objects.equals(runningJob, that.runningJob)
        && Objects.equals(unserializedRunners, that.unserializedRunners)
        && Objects.equals(lock, that.lock)
        && Objects.equals(state, that.state)
        && Objects.equals(conditions, that.conditions);
  }

  @Override
  public int hashCode() {
    return Objects.hash(
        observedGeneration,
        holder,
        holders,
        plans,
        queued,
        queue,
        runningJob,
        unserializedRunners,
        lock,
        state,
        conditions);
  }
}
