package io.leasehold.backend;

import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Parses Go-style durations as Terraform users write them: {@code 30s}, {@code 2m}, {@code 1m30s}.
 */
final class WaitDuration {

  private static final Pattern PART = Pattern.compile("(\\d+(?:\\.\\d+)?)(ms|s|m|h)");

  private WaitDuration() {}

  /**
   * @throws IllegalArgumentException naming the accepted forms when {@code text} is not one
   */
  static Duration parse(String text) {
    if (text == null || text.isBlank()) {
      throw new IllegalArgumentException("empty duration");
    }
    if (text.chars().allMatch(Character::isDigit)) {
      return Duration.ofSeconds(Long.parseLong(text));
    }
    Matcher m = PART.matcher(text);
    int at = 0;
    double millis = 0;
    while (m.find()) {
      if (m.start() != at) {
        break;
      }
      double n = Double.parseDouble(m.group(1));
      millis +=
          switch (m.group(2)) {
            case "ms" -> n;
            case "s" -> n * 1_000;
            case "m" -> n * 60_000;
            default -> n * 3_600_000;
          };
      at = m.end();
    }
    if (at != text.length()) {
      throw new IllegalArgumentException(
          "'" + text + "' is not a duration: use forms like 30s, 2m, 1m30s or 500ms");
    }
    return Duration.ofMillis((long) millis);
  }
}
