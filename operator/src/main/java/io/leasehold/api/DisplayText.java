package io.leasehold.api;

/**
 * Text from clients (a LockInfo's {@code Who}, a lock ID, a path) made safe to show in status,
 * Events, logs and replies: control characters and the invisible characters that reorder or hide
 * text (bidirectional overrides, zero-width marks) become {@code ?}, and it is cut to a length.
 */
public final class DisplayText {

  private DisplayText() {}

  /** {@code text} with unsafe characters replaced, at most {@code max} characters; null stays. */
  public static String clean(String text, int max) {
    if (text == null) {
      return null;
    }
    StringBuilder out = new StringBuilder(Math.min(text.length(), max));
    int i = 0;
    while (i < text.length()) {
      int cp = text.codePointAt(i);
      i += Character.charCount(cp);
      if (out.length() >= max) {
        out.setLength(Math.max(0, max - 3));
        out.append("...");
        return out.toString();
      }
      out.appendCodePoint(unsafe(cp) ? '?' : cp);
    }
    return out.toString();
  }

  /** Whether {@code text} holds a character {@link #clean} would replace. */
  public static boolean hasUnsafe(String text) {
    return text != null && text.codePoints().anyMatch(DisplayText::unsafe);
  }

  private static boolean unsafe(int cp) {
    switch (Character.getType(cp)) {
      case Character.CONTROL, // C0, DEL, C1
          Character.FORMAT, // bidi overrides and isolates, zero-width marks, BOM
          Character.LINE_SEPARATOR,
          Character.PARAGRAPH_SEPARATOR,
          Character.SURROGATE, // a lone half of a pair
          Character.UNASSIGNED,
          Character.PRIVATE_USE -> {
        return true;
      }
      default -> {
        return false;
      }
    }
  }
}
