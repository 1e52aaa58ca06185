package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import java.util.Objects;

/** A runner Job waiting for the lock. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class QueueEntry {

  @JsonPropertyDescription("Name of the Job (same namespace).")
  private String job;

  @JsonPropertyDescription("1-based position in the queue.")
  private Integer position;

  @JsonPropertyDescription("When the Job was created: the queue is in creation order.")
  private String createdAt;

  public QueueEntry() {}

  public QueueEntry(String job, int position, String createdAt) {
    this.job = job;
    this.position = position;
    this.createdAt = createdAt;
  }

  public String getJob() {
    return job;
  }

  public void setJob(String job) {
    this.job = job;
  }

  public Integer getPosition() {
    return position;
  }

  public void setPosition(Integer position) {
    this.position = position;
  }

  public String getCreatedAt() {
    return createdAt;
  }

  public void setCreatedAt(String createdAt) {
    this.createdAt = createdAt;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof QueueEntry q
        && Objects.equals(job, q.job)
        && Objects.equals(position, q.position)
        && Objects.equals(createdAt, q.createdAt);
  }

  @Override
  public int hashCode() {
    return Objects.hash(job, position, createdAt);
  }
}
