package io.leasehold.ops;

import io.leasehold.api.DisplayText;
import java.util.LinkedHashMap;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.spi.LoggingEventBuilder;

/**
 * The audit trail: one line on the logger {@value #LOGGER} for each lock transition, force-unlock,
 * Job admission, refusal and write, written by the replica that carried it out. The message is the
 * event's kind; the facts are key-value pairs ({@code event}, {@code namespace}, {@code state},
 * {@code workspace}, then those of the event: {@code who}, {@code lockId}, {@code operation},
 * {@code job}, {@code jobUid}, {@code replica}, {@code status}, {@code reason}, {@code serial},
 * {@code lineage}, ...), shown as {@code key="value"} in text and as {@code kvpList} in JSON. A
 * line never carries a state's content, a request body or a token: only the facts named here, each
 * cleaned of control characters and cut to {@value #MAX_VALUE} characters.
 */
public final class AuditLog {

  /** The logger every audit line is written to. */
  public static final String LOGGER = "leasehold.audit";

  /** The longest value a line carries. */
  public static final int MAX_VALUE = 200;

  private static final Logger LOG = LoggerFactory.getLogger(LOGGER);

  private AuditLog() {}

  /** A line for {@code event} on state {@code namespace/state}, to fill in and {@link Line#log}. */
  public static Line line(String event, String namespace, String state) {
    return new Line(event).with("namespace", namespace).with("state", state);
  }

  /** One audit line being filled in. */
  public static final class Line {
    private final String event;
    private final Map<String, String> fields = new LinkedHashMap<>();

    private Line(String event) {
      this.event = event;
    }

    /** Adds {@code key=value}; a null or empty value is left out. */
    public Line with(String key, Object value) {
      if (value != null) {
        String text = DisplayText.clean(String.valueOf(value), MAX_VALUE);
        if (!text.isEmpty()) {
          fields.put(key, text);
        }
      }
      return this;
    }

    public String event() {
      return event;
    }

    /** The facts of the line, in the order they were added. */
    public Map<String, String> fields() {
      return Map.copyOf(fields);
    }

    /** Writes the line. */
    public void log() {
      LoggingEventBuilder line = LOG.atInfo().addKeyValue("event", event);
      fields.forEach(line::addKeyValue);
      line.log(event);
    }
  }
}
