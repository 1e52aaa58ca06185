package io.leasehold.lock;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import java.util.Map;
import java.util.Set;

/**
 * How much room a state's lock Lease takes, counted the way the API server counts it: the API
 * server refuses any object whose {@code metadata.annotations} keys and values together exceed
 * {@value #API_LIMIT} bytes, and a lock Lease it refuses can no longer be taken, released or
 * renewed. leasehold keeps its own annotations within {@value #BUDGET} bytes, so that a lock Lease
 * is always writable, with room to spare for annotations others put on it.
 *
 * <p>The budget is split in two. The holder's part (its LockInfo, a runner Job's nested LockInfo,
 * the identities that took them, {@link #HOLDER_RESERVE} at most) is always kept free: every
 * LockInfo taken is bounded field by field ({@link LockInfo#problem()}), so granting, handing on or
 * taking over a lock always fits. Everything else (the line, the running Jobs, other annotations)
 * shares {@link #LINE_BUDGET}: a place in line that does not fit is refused like a full line.
 *
 * <p>Sizes are of the text as stored: annotation values are strings, counted in UTF-8 bytes; those
 * that hold JSON (the LockInfo, the line) are counted as serialized, escapes included (a control
 * character such as U+0001 takes 6 bytes once escaped).
 */
public final class LeaseSize {

  /** The API server's limit on an object's annotations, keys and values together. */
  public static final int API_LIMIT = 256 * 1024;

  /**
   * What leasehold lets its lock Lease's annotations grow to: well under {@link #API_LIMIT}, so
   * that annotations added by others (kubectl's last-applied-configuration, labels of tools) still
   * fit.
   */
  public static final int BUDGET = 200 * 1024;

  /** Longest identity (Kubernetes user name) recorded as a lock's owner, in bytes. */
  public static final int MAX_IDENTITY = 1024;

  /**
   * The holder's part, always kept free: the LockInfo and the nested LockInfo at their largest, the
   * owners of both, the lock ID the owner belongs to, the held-for lock ID, the lock ID taken over
   * from, the pod that took the lock (bound to its lock ID), and their keys.
   */
  public static final int HOLDER_RESERVE =
      2 * LockInfo.MAX_STORED
          + 2 * MAX_IDENTITY
          + 4 * LockInfo.MAX_ID_STORED
          + HolderPod.MAX_STORED
          + 512; // the keys

  /** What the line, the running Jobs and others' annotations may take together. */
  public static final int LINE_BUDGET = BUDGET - HOLDER_RESERVE;

  /**
   * What a client's place may grow by after it was taken: the time its request ended ({@code
   * "gone":"...Z"}, nanoseconds included).
   */
  static final int PLACE_GROWTH = ",\"gone\":\"-999999999-12-31T23:59:59.999999999Z\"".length();

  /** The annotations of the holder's part. */
  static final Set<String> HOLDER_KEYS =
      Set.of(
          LeaseLock.LOCK_INFO_ANNOTATION,
          LeaseLock.OWNER_ANNOTATION,
          LeaseLock.OWNER_OF_ANNOTATION,
          LeaseLock.HELD_FOR_ANNOTATION,
          LeaseLock.CLIENT_LOCK_ANNOTATION,
          LeaseLock.CLIENT_LOCK_OWNER_ANNOTATION,
          LeaseLock.TOOK_OVER_FROM_ANNOTATION,
          LeaseLock.HOLDER_POD_ANNOTATION);

  private static final ObjectMapper JSON = new ObjectMapper();

  private LeaseSize() {}

  /**
   * The bytes {@code text} takes in UTF-8. A lone surrogate (half of a pair, which only an escape
   * in a client's JSON can produce) counts as the replacement character it is stored as: 3 bytes.
   */
  public static long utf8(String text) {
    if (text == null) {
      return 0;
    }
    long bytes = 0;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c < 0x80) {
        bytes += 1;
      } else if (c < 0x800) {
        bytes += 2;
      } else if (Character.isHighSurrogate(c)
          && i + 1 < text.length()
          && Character.isLowSurrogate(text.charAt(i + 1))) {
        bytes += 4;
        i++;
      } else {
        bytes += 3;
      }
    }
    return bytes;
  }

  /**
   * The bytes {@code text} takes as a JSON string value as leasehold writes it, without its quotes:
   * UTF-8, with {@code "}, {@code \} and control characters escaped.
   */
  public static long json(String text) {
    if (text == null) {
      return 0;
    }
    try {
      return utf8(JSON.writeValueAsString(text)) - 2;
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The size of {@code annotations} as the API server counts it: keys and values in bytes. */
  public static long of(Map<String, String> annotations) {
    long total = 0;
    for (Map.Entry<String, String> e : annotations.entrySet()) {
      total += utf8(e.getKey()) + utf8(e.getValue());
    }
    return total;
  }

  /** The size of {@code lease}'s annotations as the API server counts it. */
  public static long of(Lease lease) {
    return of(LeaseLock.annotations(lease));
  }

  /**
   * The room left for the line within {@link #LINE_BUDGET} when {@code line} replaces the line of
   * {@code lease}: negative when it does not fit. Each connected client's place counts with the
   * room it may still grow by ({@link #PLACE_GROWTH}).
   */
  public static long lineRoom(Lease lease, Line line) {
    long others = 0;
    for (Map.Entry<String, String> e : LeaseLock.annotations(lease).entrySet()) {
      if (!HOLDER_KEYS.contains(e.getKey()) && !LeaseLock.LINE_ANNOTATION.equals(e.getKey())) {
        others += utf8(e.getKey()) + utf8(e.getValue());
      }
    }
    String json = line.toJson();
    // The key and brackets count even for an empty line, so a first place fits as any other.
    long lineSize = utf8(LeaseLock.LINE_ANNOTATION) + (json == null ? 2 : utf8(json));
    long growth =
        line.tickets().stream().filter(t -> t.isClient() && t.gone() == null).count()
            * PLACE_GROWTH;
    return LINE_BUDGET - others - lineSize - growth;
  }

  /** Whether {@code line} fits on {@code lease} in place of its line. */
  public static boolean lineFits(Lease lease, Line line) {
    return lineRoom(lease, line) >= 0;
  }

  /**
   * The room {@code ticket} takes when appended to a line that is not empty: its JSON, the comma
   * before it, and for a connected client the room it may still grow by.
   */
  public static long place(Ticket ticket) {
    return utf8(Line.of(java.util.List.of(ticket)).toJson())
        - 1
        + (ticket.isClient() && ticket.gone() == null ? PLACE_GROWTH : 0);
  }

  /** Why {@code identity} is not recorded as a lock's owner, if it is not: it is too long. */
  public static java.util.Optional<String> identityProblem(String identity) {
    long bytes = utf8(identity);
    return bytes <= MAX_IDENTITY
        ? java.util.Optional.empty()
        : java.util.Optional.of(
            "the requester's identity is "
                + bytes
                + " bytes long; at most "
                + MAX_IDENTITY
                + " are recorded as a lock's owner in the lock Lease");
  }
}
