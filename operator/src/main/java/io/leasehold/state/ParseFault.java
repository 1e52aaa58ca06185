package io.leasehold.state;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.exc.InputCoercionException;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.core.io.JsonEOFException;
import java.io.CharConversionException;
import java.io.IOException;

/**
 * A fault in a state or a request body, told by its kind and position ("not JSON at byte 1469"),
 * never by the text at fault: a state holds passwords and keys, and the parser's own messages quote
 * the token they choke on. What this returns may go into Events, status, logs and replies.
 */
public final class ParseFault {

  private ParseFault() {}

  /** The kind of fault and where it is, without any of the text. */
  public static String describe(IOException e) {
    if (e instanceof JsonProcessingException json) {
      return kind(json) + position(json.getLocation());
    }
    if (e instanceof CharConversionException) {
      return "not UTF-8 text";
    }
    return "unreadable (" + e.getClass().getSimpleName() + ")";
  }

  private static String kind(JsonProcessingException e) {
    if (e instanceof JsonEOFException) {
      return "JSON cut short";
    }
    if (e instanceof StreamConstraintsException) {
      return "JSON over a size or nesting limit";
    }
    if (e instanceof InputCoercionException) {
      return "a number out of range";
    }
    return "not JSON";
  }

  private static String position(JsonLocation at) {
    if (at == null) {
      return "";
    }
    if (at.getByteOffset() >= 0) {
      return " at byte " + at.getByteOffset();
    }
    if (at.getCharOffset() >= 0) {
      return " at character " + at.getCharOffset();
    }
    return "";
  }
}
