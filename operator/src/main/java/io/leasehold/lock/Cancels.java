package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.DisplayText;
import io.leasehold.lock.LeaseStore.Step;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Cancelling runs that wait for a state's lock: their places are dropped from the line, and each is
 * recorded on the lock Lease (annotation {@value #ANNOTATION}) in the same conditional write, so
 * that every replica sees it with the line. A cancelled run never gets the lock: the replica
 * holding a cancelled client's open request answers it with the reason, a LOCK that comes back with
 * a cancelled lock ID (Terraform's {@code -lock-timeout} retries send the same one) is refused as
 * {@link LockService.Refusal#CANCELLED} for {@link #KEPT}, and a cancelled runner Job never takes a
 * place again. Only waiting runs are cancelled: a holder is never touched.
 *
 * <p>A cancel covers the runs that arrived by a given time, so that asking again with the same time
 * (a GitOps tool applying the same annotations once more) cancels nothing that arrived since.
 */
final class Cancels {

  /** On the lock Lease: the runs cancelled lately ({@link Cancelled}), newest last. */
  static final String ANNOTATION = "leasehold.io/cancelled";

  /** How long a cancelled run is remembered: a LOCK with its lock ID is refused until then. */
  static final Duration KEPT = Duration.ofHours(1);

  /** Most runs remembered at once; beyond that the oldest are forgotten first. */
  static final int MAX_KEPT = 32;

  /** Most characters of a reason kept: the Lease must stay small ({@link LeaseSize}). */
  static final int WHY_KEPT = 300;

  private static final ObjectMapper JSON =
      new ObjectMapper()
          .registerModule(new JavaTimeModule())
          .disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS);

  private static final TypeReference<List<Cancelled>> RECORDS = new TypeReference<>() {};

  /**
   * One cancelled run.
   *
   * @param kind a client or a runner Job
   * @param id the client's lock ID, or the Job's UID
   * @param why why it was cancelled, and who asked, as far as known
   * @param at when it was cancelled
   */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  record Cancelled(
      @JsonProperty("kind") Ticket.Kind kind,
      @JsonProperty("id") String id,
      @JsonProperty("why") String why,
      @JsonProperty("at") Instant at) {}

  private final LeaseStore store;
  private final Clock clock;
  private final PlaceKeeping places;

  Cancels(LeaseStore store, Clock clock, PlaceKeeping places) {
    this.store = store;
    this.clock = clock;
    this.places = places;
  }

  /**
   * Cancels the waiting runs {@code request} names, in one conditional write: the clients in line
   * it names (all of them with {@link LockService.CancelRequest#allClients}) that arrived by {@link
   * LockService.CancelRequest#arrivedBy}, and the runner Jobs it names by UID, in line or not. The
   * holder is never cancelled: a lock ID or Job that holds the lock is left alone and said so.
   */
  LockService.CancelOutcome cancel(StateNames names, LockService.CancelRequest request) {
    return store.transition(names, lease -> decide(lease, request));
  }

  private Step<LockService.CancelOutcome> decide(Lease lease, LockService.CancelRequest request) {
    Instant now = clock.instant();
    Line line = places.kept(LeaseLock.line(lease), now);
    Optional<Holder> holder = Holder.of(lease, now);
    Optional<String> holderJob = holder.flatMap(Holder::jobUid);
    List<Ticket> cancelled = new ArrayList<>();
    List<String> leftAlone = new ArrayList<>();
    for (Ticket t : line.tickets()) {
      if (t.isClient() && (request.allClients() || request.lockIds().contains(t.id()))) {
        if (t.since().isAfter(request.arrivedBy())) {
          leftAlone.add(
              "client "
                  + t.id()
                  + " ("
                  + t.who()
                  + ") arrived at "
                  + t.since()
                  + ", after the cancel's time "
                  + request.arrivedBy());
          continue;
        }
        cancelled.add(t);
      } else if (t.isJob() && request.jobs().containsKey(t.id())) {
        cancelled.add(t);
      }
    }
    for (Map.Entry<String, String> job : request.jobs().entrySet()) {
      if (holderJob.filter(job.getKey()::equals).isPresent()
          || LeaseLock.running(lease).stream().anyMatch(r -> r.uid().equals(job.getKey()))) {
        leftAlone.add("runner Job " + job.getValue() + " runs (it was admitted)");
        cancelled.removeIf(t -> t.id().equals(job.getKey()));
      } else if (line.find(job.getKey()).isEmpty()) {
        // Waiting unlined (beyond the line's room): recorded, so it never joins it.
        cancelled.add(Ticket.job(job.getKey(), job.getValue(), now));
      }
    }
    for (String id : request.lockIds()) {
      if (holder.isPresent() && holder.get().id().equals(id)) {
        leftAlone.add("lock ID " + id + " holds the lock (" + holder.get().summary() + ")");
      } else if (line.find(id).isEmpty()) {
        leftAlone.add("lock ID " + id + " is not waiting");
      }
    }
    if (cancelled.isEmpty()) {
      return Step.answer(new LockService.CancelOutcome(List.of(), leftAlone));
    }
    Set<String> ids = cancelled.stream().map(Ticket::id).collect(Collectors.toSet());
    Line kept = line.filter(t -> !ids.contains(t.id()));
    List<Cancelled> added =
        cancelled.stream()
            .map(
                t ->
                    new Cancelled(
                        t.kind(), t.id(), DisplayText.clean(request.why(), WHY_KEPT), now))
            .toList();
    Lease changed = recorded(LeaseLock.withLine(lease, kept), added, now);
    return new Step<>(changed, new LockService.CancelOutcome(cancelled, leftAlone));
  }

  /** Which of {@code lockIds} were cancelled lately, with the refusal to answer each with. */
  Map<String, LockService.Refused> cancelled(
      StateNames names, java.util.Collection<String> lockIds) {
    Optional<Lease> lease = store.existing(names);
    if (lease.isEmpty()) {
      return Map.of();
    }
    Instant now = clock.instant();
    Map<String, LockService.Refused> found = new java.util.HashMap<>();
    for (Cancelled c : recent(lease.get(), now)) {
      if (c.kind() == Ticket.Kind.CLIENT && lockIds.contains(c.id())) {
        found.put(c.id(), refusal(c.id(), c));
      }
    }
    return found;
  }

  /** {@code lease} with {@code added} recorded, without records older than {@link #KEPT}. */
  static Lease recorded(Lease lease, List<Cancelled> added, Instant now) {
    List<Cancelled> all = new ArrayList<>(recent(lease, now));
    all.removeIf(c -> added.stream().anyMatch(a -> a.id().equals(c.id())));
    all.addAll(added);
    all.sort(Comparator.comparing(Cancelled::at));
    if (all.size() > MAX_KEPT) {
      all = new ArrayList<>(all.subList(all.size() - MAX_KEPT, all.size()));
    }
    try {
      return LeaseLock.withAnnotation(
          lease, ANNOTATION, all.isEmpty() ? null : JSON.writeValueAsString(all));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * The runs recorded as cancelled on {@code lease} within {@link #KEPT} of {@code now}. A value
   * that cannot be read (edited by hand) reads as none.
   */
  static List<Cancelled> recent(Lease lease, Instant now) {
    String json = LeaseLock.annotations(lease).get(ANNOTATION);
    if (json == null || json.isBlank()) {
      return List.of();
    }
    try {
      List<Cancelled> parsed = JSON.readValue(json, RECORDS);
      return parsed.stream()
          .filter(c -> c != null && c.kind() != null && c.id() != null && c.at() != null)
          .filter(c -> c.at().plus(KEPT).isAfter(now))
          .toList();
    } catch (JsonProcessingException | IllegalArgumentException e) {
      return List.of();
    }
  }

  /** The record of {@code id} (a lock ID or a Job's UID) cancelled lately, if it was. */
  static Optional<Cancelled> find(Lease lease, String id, Instant now) {
    return recent(lease, now).stream().filter(c -> c.id().equals(id)).findFirst();
  }

  /**
   * Whether client {@code lockId} was cancelled lately: its request is answered so, and it never
   * takes a place in line again.
   */
  static boolean cancelledClient(Lease lease, String lockId, Instant now) {
    return find(lease, lockId, now).filter(c -> c.kind() == Ticket.Kind.CLIENT).isPresent();
  }

  /**
   * The refusal of a LOCK with lock ID {@code lockId} when that client was cancelled lately and
   * does not hold the lock (a holder is never cancelled; a retry of its granted LOCK stays
   * granted).
   */
  static Optional<LockService.Refused> refusedLock(Lease lease, String lockId, Instant now) {
    if (Holder.of(lease, now).filter(h -> h.id().equals(lockId)).isPresent()) {
      return Optional.empty();
    }
    return find(lease, lockId, now)
        .filter(c -> c.kind() == Ticket.Kind.CLIENT)
        .map(c -> refusal(lockId, c));
  }

  /** The UIDs of the runner Jobs cancelled lately. */
  static Set<String> jobs(Lease lease, Instant now) {
    return recent(lease, now).stream()
        .filter(c -> c.kind() == Ticket.Kind.JOB)
        .map(Cancelled::id)
        .collect(Collectors.toSet());
  }

  /** The refusal of a LOCK with lock ID {@code id}, cancelled as {@code c} says. */
  static LockService.Refused refusal(String id, Cancelled c) {
    return new LockService.Refused(
        LockService.Refusal.CANCELLED,
        "this run was cancelled while it waited: "
            + c.why()
            + ". It does not get the lock (lock ID "
            + id
            + " is refused until "
            + c.at().plus(KEPT)
            + "); start a new run to wait again",
        Optional.empty());
  }
}
