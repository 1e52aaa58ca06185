package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import java.time.Instant;

/**
 * One place in a state's line: a runner Job waiting to be admitted, or an HTTP client waiting with
 * {@code ?wait=} for the lock.
 *
 * @param kind job or client
 * @param id the Job's UID, or the client's lock ID (Terraform re-sends it on every retry)
 * @param who for people: the Job's name, or the client's LockInfo {@code Who}
 * @param owner for a client: a digest of the identity that asked, so only it may take the place
 * @param since when the place was taken
 * @param replica for a client: the operator replica holding its request, the only one that may
 *     grant it the lock
 * @param gone for a client: when its request ended (answered or disconnected); the place is kept
 *     for a grace period in case the same lock ID comes back, but the lock is never granted to it
 *     while it is gone
 * @param plan true for a plan ({@code OperationTypePlan}): it shares the lock with other plans;
 *     absent for a run that holds the lock alone
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record Ticket(
    @JsonProperty("kind") Kind kind,
    @JsonProperty("id") String id,
    @JsonProperty("who") String who,
    @JsonProperty("owner") String owner,
    @JsonProperty("since") Instant since,
    @JsonProperty("replica") String replica,
    @JsonProperty("gone") Instant gone,
    @JsonProperty("plan") Boolean plan) {

  /** What waits in line. */
  public enum Kind {
    @JsonProperty("job")
    JOB,
    @JsonProperty("client")
    CLIENT
  }

  /**
   * Most characters of {@code who} a place keeps: it is for people to read, and the line, kept on
   * the lock Lease, must stay small (see {@link LeaseSize}).
   */
  public static final int WHO_KEPT = 64;

  public static Ticket job(String uid, String name, Instant since) {
    return new Ticket(Kind.JOB, uid, kept(name), null, since, null, null, null);
  }

  public static Ticket client(
      String lockId, String who, String ownerDigest, String replica, Instant since) {
    return new Ticket(Kind.CLIENT, lockId, kept(who), ownerDigest, since, replica, null, null);
  }

  /**
   * {@code who} as a place keeps it: control and invisible characters (6 bytes each once escaped in
   * the line's JSON) replaced, and cut to {@value #WHO_KEPT} characters.
   */
  static String kept(String who) {
    return io.leasehold.api.DisplayText.clean(who, WHO_KEPT);
  }

  @JsonIgnore
  public boolean isJob() {
    return kind == Kind.JOB;
  }

  @JsonIgnore
  public boolean isClient() {
    return kind == Kind.CLIENT;
  }

  /** The same place, for a plan: it shares the lock with other plans. */
  public Ticket asPlan() {
    return new Ticket(kind, id, who, owner, since, replica, gone, Boolean.TRUE);
  }

  /** Whether this place is a plan's, which shares the lock with other plans. */
  @JsonIgnore
  public boolean forPlan() {
    return Boolean.TRUE.equals(plan);
  }

  /** This client's request ended at {@code at}: it keeps its place but may not be granted. */
  public Ticket goneAt(Instant at) {
    return new Ticket(kind, id, who, owner, since, replica, at, plan);
  }

  /** The same client is back, on {@code replica}: connected again, in the same place. */
  public Ticket back(String replica) {
    return new Ticket(kind, id, who, owner, since, replica, null, plan);
  }
}
