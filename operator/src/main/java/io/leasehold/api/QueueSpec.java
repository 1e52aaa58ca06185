package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class QueueSpec extends KeepsUnknownFields {

  @JsonPropertyDescription(
      "Hold the queue: while true nothing new is admitted, neither runner Jobs nor HTTP-backend"
          + " clients, and the run that holds the lock finishes; those waiting keep their places"
          + " and are served in order once it is false again. Stock clients of the kubernetes"
          + " backend are not held.")
  @Default("false")
  private Boolean hold = false;

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
