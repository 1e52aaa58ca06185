package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import java.util.Objects;

/** The lock holder as Terraform describes it in its LockInfo. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class LockStatus extends KeepsUnknownFields {

  @JsonPropertyDescription("Lock ID (the Lease's holderIdentity); force-unlock takes this ID.")
  private String id;

  @JsonPropertyDescription("Who took the lock, as the client reported it (user@host).")
  private String who;

  @JsonPropertyDescription("The Terraform operation that holds the lock (apply, plan, ...).")
  private String operation;

  @JsonPropertyDescription("Free-form information the client attached to the lock.")
  private String info;

  @JsonPropertyDescription("When the lock was taken, as the client reported it.")
  private String since;

  @JsonPropertyDescription("Terraform version of the holder.")
  private String version;

  @JsonPropertyDescription(
      "True when leasehold holds and renews the Lease for this holder and so can vouch that it"
          + " is alive; false for holders such as stock Terraform that never renew a lock.")
  private Boolean vouched;

  @JsonPropertyDescription(
      "The pod that took the lock (namespace/name), when a pod did with a bound ServiceAccount"
          + " token: the lock is released once that pod is gone or has ended, unless"
          + " spec.lock.releaseVanishedPods is false.")
  private String pod;

  public String getPod() {
    return pod;
  }

  public void setPod(String pod) {
    this.pod = DisplayText.clean(pod, 512);
  }

  public String getId() {
    return id;
  }

  public void setId(String id) {
    this.id = DisplayText.clean(id, 256);
  }

  public String getWho() {
    return who;
  }

  public void setWho(String who) {
    this.who = DisplayText.clean(who, 256);
  }

  public String getOperation() {
    return operation;
  }

  public void setOperation(String operation) {
    this.operation = DisplayText.clean(operation, 256);
  }

  public String getInfo() {
    return info;
  }

  public void setInfo(String info) {
    this.info = DisplayText.clean(info, 4096);
  }

  public String getSince() {
    return since;
  }

  public void setSince(String since) {
    this.since = DisplayText.clean(since, 256);
  }

  public String getVersion() {
    return version;
  }

  public void setVersion(String version) {
    this.version = DisplayText.clean(version, 256);
  }

  public Boolean getVouched() {
    return vouched;
  }

  public void setVouched(Boolean vouched) {
    this.vouched = vouched;
  }

  @Override
  public boolean equals(Object o) {
    if (this == o) {
      return true;
    }
    if (!(o instanceof LockStatus)) {
      return false;
    }
    LockStatus that = (LockStatus) o;
    return Objects.equals(id, that.id)
        && Objects.equals(who, that.who)
        && Objects.equals(operation, that.operation)
        && Objects.equals(info, that.info)
        && Objects.equals(since, that.since)
        && Objects.equals(version, that.version)
        && Objects.equals(vouched, that.vouched)
        && Objects.equals(pod, that.pod);
  }

  @Override
  public int hashCode() {
    return Objects.hash(id, who, operation, info, since, version, vouched, pod);
  }
}
