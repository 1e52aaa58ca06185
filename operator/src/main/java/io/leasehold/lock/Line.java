package io.leasehold.lock;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Optional;
import java.util.function.Predicate;

/**
 * A state's line: runner Jobs and waiting HTTP clients in one order of arrival. It is kept on the
 * lock Lease itself (annotation {@value LeaseLock#LINE_ANNOTATION}), so every operator replica sees
 * the same order, it survives restarts and leader changes, and granting the lock and leaving the
 * line are one conditional write.
 *
 * <p>Immutable: every change returns a new line.
 */
public final class Line {

  /** Places for waiting clients: beyond this a LOCK is refused, the Lease stays small. */
  public static final int MAX_CLIENTS = 128;

  /** Places for Jobs; more Jobs wait unlined, in creation order, until places free up. */
  public static final int MAX_JOBS = 512;

  private static final ObjectMapper JSON =
      new ObjectMapper()
          .registerModule(new JavaTimeModule())
          .disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS);

  private static final TypeReference<List<Ticket>> TICKETS = new TypeReference<>() {};

  public static final Line EMPTY = new Line(List.of());

  private final List<Ticket> tickets;

  private Line(List<Ticket> tickets) {
    this.tickets = List.copyOf(tickets);
  }

  public static Line of(List<Ticket> tickets) {
    return new Line(tickets);
  }

  /**
   * Reads a line from its annotation. A value that is not a line (edited by hand) reads as empty:
   * the waiters it named lose their places, but nothing else breaks.
   */
  public static Line parse(String json) {
    if (json == null || json.isBlank()) {
      return EMPTY;
    }
    try {
      List<Ticket> parsed = JSON.readValue(json, TICKETS);
      return new Line(
          parsed.stream()
              .filter(t -> t != null && t.kind() != null && t.id() != null && t.since() != null)
              .toList());
    } catch (JsonProcessingException | IllegalArgumentException e) {
      return EMPTY;
    }
  }

  /** The annotation value; null for an empty line, so the annotation goes away. */
  public String toJson() {
    if (tickets.isEmpty()) {
      return null;
    }
    try {
      return JSON.writeValueAsString(tickets);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  public List<Ticket> tickets() {
    return tickets;
  }

  public boolean isEmpty() {
    return tickets.isEmpty();
  }

  public Optional<Ticket> find(String id) {
    return tickets.stream().filter(t -> t.id().equals(id)).findFirst();
  }

  /** 1-based place of {@code id}, 0 when it is not in line. */
  public int position(String id) {
    for (int i = 0; i < tickets.size(); i++) {
      if (tickets.get(i).id().equals(id)) {
        return i + 1;
      }
    }
    return 0;
  }

  public long clients() {
    return tickets.stream().filter(Ticket::isClient).count();
  }

  public long jobs() {
    return tickets.stream().filter(Ticket::isJob).count();
  }

  /** Adds {@code ticket} at the back. */
  public Line append(Ticket ticket) {
    List<Ticket> next = new ArrayList<>(tickets);
    next.add(ticket);
    return new Line(next);
  }

  /** Replaces the ticket with the same id in place. */
  public Line replace(Ticket ticket) {
    List<Ticket> next = new ArrayList<>(tickets.size());
    for (Ticket t : tickets) {
      next.add(t.id().equals(ticket.id()) ? ticket : t);
    }
    return new Line(next);
  }

  public Line without(String id) {
    return new Line(tickets.stream().filter(t -> !t.id().equals(id)).toList());
  }

  /** Keeps the tickets that {@code keep} accepts. */
  public Line filter(Predicate<Ticket> keep) {
    return new Line(tickets.stream().filter(keep).toList());
  }

  /** Without the clients whose request ended more than {@code grace} ago. */
  public Line pruned(Instant now, Duration grace) {
    return filter(t -> t.gone() == null || !t.gone().plus(grace).isBefore(now));
  }

  /** The ids in line. */
  public Collection<String> ids() {
    return tickets.stream().map(Ticket::id).toList();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Line l && l.tickets.equals(tickets);
  }

  @Override
  public int hashCode() {
    return tickets.hashCode();
  }

  @Override
  public String toString() {
    return tickets.toString();
  }
}
