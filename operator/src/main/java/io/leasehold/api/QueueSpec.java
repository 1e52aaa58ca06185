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

  public boolean isHold() {
    return Boolean.TRUE.equals(hold);
  }

  public void setHold(Boolean hold) {
    this.hold = hold;
  }
}
