package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class LockSpec extends KeepsUnknownFields {

  public static final int DEFAULT_LEASE_DURATION_SECONDS = 300;

  @JsonPropertyDescription(
      "Duration written on the Lease while leasehold holds the lock for a runner Job, renewed"
          + " every third of it. A lapsed lock is still not taken over while its Job runs; the"
          + " duration decides how soon the lock of a Job that ended while no replica leads may"
          + " be taken.")
  @Default("300")
  @Min(5)
  @Max(3600)
  private Integer leaseDurationSeconds = DEFAULT_LEASE_DURATION_SECONDS;

  @JsonPropertyDescription(
      "Release a lock taken through the HTTP backend by a pod (its bound ServiceAccount token names"
          + " the pod) once that pod is gone, replaced by another of the same name, or has ended"
          + " (Succeeded or Failed), with a LockReleasedPodGone Event. Only locks of a single"
          + " holder are released this way, never a runner Job's or a plan's; a pod leasehold"
          + " may not read is never taken for gone. False keeps such locks until they are"
          + " unlocked or force-unlocked.")
  @Default("true")
  private Boolean releaseVanishedPods = true;

  public boolean getReleaseVanishedPods() {
    return releaseVanishedPods == null || releaseVanishedPods;
  }

  public void setReleaseVanishedPods(Boolean releaseVanishedPods) {
    this.releaseVanishedPods = releaseVanishedPods;
  }

  public int getLeaseDurationSeconds() {
    return leaseDurationSeconds == null ? DEFAULT_LEASE_DURATION_SECONDS : leaseDurationSeconds;
  }

  public void setLeaseDurationSeconds(Integer leaseDurationSeconds) {
    this.leaseDurationSeconds = leaseDurationSeconds;
  }
}
