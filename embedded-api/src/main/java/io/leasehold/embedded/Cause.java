package io.leasehold.embedded;

/**
 * One reason an object is invalid, as a Kubernetes {@code Status} lists it in {@code
 * details.causes}: the field (a dotted path, or {@code <nil>} for the object as a whole), a reason
 * such as {@code FieldValueInvalid}, and the message without the field.
 */
record Cause(String field, String reason, String message) {

  static Cause invalid(String field, Object value, String detail) {
    return new Cause(field, "FieldValueInvalid", "Invalid value: " + quote(value) + ": " + detail);
  }

  static Cause required(String field, String detail) {
    return new Cause(field, "FieldValueRequired", "Required value" + suffix(detail));
  }

  static Cause tooLong(String field, long max) {
    return new Cause(
        field, "FieldValueTooLong", "Too long: may not be more than " + max + " bytes");
  }

  static Cause forbidden(String field, String detail) {
    return new Cause(field, "FieldValueForbidden", "Forbidden: " + detail);
  }

  static Cause notSupported(String field, Object value, String supported) {
    return new Cause(
        field,
        "FieldValueNotSupported",
        "Unsupported value: " + quote(value) + ": supported values: " + supported);
  }

  /** The cause as the API server prints it in a Status message: {@code field: message}. */
  String text() {
    return field + ": " + message;
  }

  private static String suffix(String detail) {
    return detail == null || detail.isEmpty() ? "" : ": " + detail;
  }

  static String quote(Object value) {
    if (value instanceof String s) {
      return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
    return String.valueOf(value);
  }
}
