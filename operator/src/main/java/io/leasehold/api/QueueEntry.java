package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonClassDescription;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import java.util.Objects;

/** One place in a state's line: a runner Job, or an HTTP client waiting with ?wait=. */
@JsonClassDescription(
    "One place in the line for the lock: a runner Job or an HTTP backend client waiting with"
        + " ?wait=, in the order they are served.")
@JsonInclude(JsonInclude.Include.NON_NULL)
public class QueueEntry extends KeepsUnknownFields {

  @JsonPropertyDescription("job (a runner Job) or client (an HTTP backend client waiting).")
  private String kind;

  @JsonPropertyDescription("The Job's name (same namespace), or who the client said it is.")
  private String name;

  @JsonPropertyDescription("1-based position in the line.")
  private Integer position;

  @JsonPropertyDescription(
      "When it joined the line (for a Job not in line yet, when it was created).")
  private String since;

  @JsonPropertyDescription(
      "For a client: true while its request is connected; false while it is away (it keeps its"
          + " place for a grace period, but is passed over while away).")
  private Boolean connected;

  public QueueEntry() {}

  public QueueEntry(String kind, String name, int position, String since, Boolean connected) {
    this.kind = kind;
    this.name = name;
    this.position = position;
    this.since = since;
    this.connected = connected;
  }

  public String getKind() {
    return kind;
  }

  public void setKind(String kind) {
    this.kind = kind;
  }

  public String getName() {
    return name;
  }

  public void setName(String name) {
    this.name = name;
  }

  public Integer getPosition() {
    return position;
  }

  public void setPosition(Integer position) {
    this.position = position;
  }

  public String getSince() {
    return since;
  }

  public void setSince(String since) {
    this.since = since;
  }

  public Boolean getConnected() {
    return connected;
  }

  public void setConnected(Boolean connected) {
    this.connected = connected;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof QueueEntry q
        && Objects.equals(kind, q.kind)
        && Objects.equals(name, q.name)
        && Objects.equals(position, q.position)
        && Objects.equals(since, q.since)
        && Objects.equals(connected, q.connected);
  }

  @Override
  public int hashCode() {
    return Objects.hash(kind, name, position, since, connected);
  }
}
