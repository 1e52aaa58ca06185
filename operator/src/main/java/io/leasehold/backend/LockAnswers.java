package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The body of a LOCK answered 423 or 409: a Terraform LockInfo that says who holds the lock, or why
 * the LOCK is refused, in a form each client shows.
 *
 * <p>Terraform's {@code http} backend (1.11) reads only the {@code ID} of that body and prints
 * {@code HTTP remote state already locked: ID=...}; under "Lock Info" it shows its own LockInfo,
 * not the holder's. OpenTofu prints the body's fields. So the {@code ID} is the holder's lock ID
 * followed, in one line, by who holds the lock ({@code held by WHO for OPERATION since CREATED}) or
 * why the LOCK is refused; the other fields are the holder's, and for a refusal {@code Who} is
 * {@value #LEASEHOLD} and {@code Info} the reason. The holder's lock ID is the text before {@value
 * #SEPARATOR}. {@code Created} is always a time Terraform reads (RFC 3339): a body it cannot read
 * is shown as "failed to unmarshal body", without its ID.
 */
final class LockAnswers {

  /** Who a refusal comes from. */
  static final String LEASEHOLD = "leasehold";

  /** Between the holder's lock ID and what is said about it in the answer's ID. */
  static final String SEPARATOR = " (";

  /** Longest text said after the lock ID: one line Terraform prints whole. */
  private static final int MAX_SAID = 400;

  private LockAnswers() {}

  /** 423 for a LOCK that is not granted now: the holder, or who is before the requester. */
  static Reply notNow(LockService.NotNow notNow) {
    Optional<LockInfo> shown = LockInfo.parse(notNow.holderJson());
    if (shown.isEmpty()) {
      return Reply.json(423, notNow.holderJson());
    }
    LockInfo info = shown.get();
    String said = notNow.holder().isPresent() ? held(info) : info.info();
    return Reply.json(423, withId(info, info.id(), said).toJson());
  }

  /**
   * A LOCK refused for {@code reason}, with {@code status} (409 or 423, which Terraform reads as
   * "locked" and retries under {@code -lock-timeout}): the holder's lock ID and fields when there
   * is a holder, {@code Who} {@value #LEASEHOLD} and the reason in {@code Info}.
   */
  static Reply refused(int status, String reason, Optional<Holder> holder) {
    Optional<LockInfo> held = holder.flatMap(Holder::info);
    String line = DisplayText.clean(oneLine(reason), MAX_SAID);
    LockInfo shown =
        new LockInfo(
            holder.map(Holder::id).orElse(""),
            held.map(LockInfo::operation).orElse(""),
            line,
            LEASEHOLD,
            held.map(LockInfo::version).orElse(""),
            held.map(LockInfo::created).orElse(""),
            held.map(LockInfo::path).orElse(""));
    return Reply.json(status, withId(shown, shown.id(), "refused by leasehold: " + line).toJson());
  }

  /**
   * A LOCK refused with a plain-text {@code reply} (409 or 423: the state's names collide, say),
   * answered with a LockInfo saying why instead, so Terraform prints the reason; any other reply as
   * it is.
   */
  static Reply forLock(Reply reply) {
    if ((reply.status() != 409 && reply.status() != 423)
        || !reply.contentType().startsWith("text/plain")) {
      return reply;
    }
    Reply said = refused(reply.status(), reply.bodyText().trim(), Optional.empty());
    for (var header : reply.headers().entrySet()) {
      said = said.withHeader(header.getKey(), header.getValue());
    }
    return said;
  }

  /** What the holder's LockInfo says, in one line: {@code held by WHO for OP since CREATED}. */
  private static String held(LockInfo info) {
    StringBuilder said = new StringBuilder("held");
    if (!blank(info.who())) {
      said.append(" by ").append(info.who());
    }
    if (!blank(info.operation())) {
      said.append(" for ").append(info.operation());
    }
    if (!blank(info.created())) {
      said.append(" since ").append(info.created());
    }
    if (!blank(info.info())) {
      said.append(": ").append(info.info());
    }
    return said.toString();
  }

  private static LockInfo withId(LockInfo info, String id, String said) {
    String text = DisplayText.clean(oneLine(said), MAX_SAID);
    String shownId = blank(id) ? text : id + SEPARATOR + text + ")";
    return new LockInfo(
        shownId,
        info.operation(),
        info.info(),
        info.who(),
        info.version(),
        readable(info.created()),
        info.path());
  }

  /** An RFC 3339 time, as Go's {@code time.Time} reads it. */
  private static final Pattern RFC_3339 =
      Pattern.compile("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})");

  /**
   * {@code created} when Terraform can read it, else the time of this answer: Terraform reads
   * {@code Created} as a time, and a body whose {@code Created} is not one (empty, say) is not read
   * at all ("failed to unmarshal body"), its ID and reason unseen.
   */
  private static String readable(String created) {
    return created != null && RFC_3339.matcher(created).matches()
        ? created
        : Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
  }

  private static String oneLine(String text) {
    return text == null ? "" : text.replaceAll("\\s*[\\r\\n]+\\s*", "; ").trim();
  }

  private static boolean blank(String s) {
    return s == null || s.isBlank();
  }
}
