package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The {@code labelSelector} of a list, delete-collection or watch request, in the API's string
 * form: requirements separated by commas, each {@code key}, {@code !key}, {@code key=value}, {@code
 * key==value}, {@code key!=value}, {@code key in (v1,v2)}, {@code key notin (v1,v2)}, {@code key>n}
 * or {@code key<n}. A selector that does not parse is refused, as the API server refuses it (400),
 * instead of being taken to select everything.
 */
record LabelSelectorString(List<Requirement> requirements) {

  enum Operator {
    EXISTS,
    DOES_NOT_EXIST,
    EQUALS,
    NOT_EQUALS,
    IN,
    NOT_IN,
    GREATER_THAN,
    LESS_THAN
  }

  record Requirement(String key, Operator operator, Set<String> values) {

    boolean matches(JsonNode labels) {
      JsonNode value = labels == null ? null : labels.get(key);
      boolean has = value != null && !value.isNull();
      String text = has ? value.asText() : null;
      return switch (operator) {
        case EXISTS -> has;
        case DOES_NOT_EXIST -> !has;
        case EQUALS, IN -> has && values.contains(text);
        case NOT_EQUALS, NOT_IN -> !has || !values.contains(text);
        case GREATER_THAN, LESS_THAN -> has && compare(text);
      };
    }

    private boolean compare(String text) {
      long actual;
      try {
        actual = Long.parseLong(text);
      } catch (NumberFormatException e) {
        return false;
      }
      long bound = Long.parseLong(values.iterator().next());
      return operator == Operator.GREATER_THAN ? actual > bound : actual < bound;
    }
  }

  /** Thrown for a selector that does not parse; its message says where and why. */
  static final class InvalidSelector extends IllegalArgumentException {
    InvalidSelector(String message) {
      super(message);
    }
  }

  static final LabelSelectorString EVERYTHING = new LabelSelectorString(List.of());

  boolean isEmpty() {
    return requirements.isEmpty();
  }

  boolean matches(JsonNode labels) {
    for (Requirement r : requirements) {
      if (!r.matches(labels)) {
        return false;
      }
    }
    return true;
  }

  /** Parses a selector; null or blank selects everything. */
  static LabelSelectorString parse(String selector) {
    if (selector == null || selector.isBlank()) {
      return EVERYTHING;
    }
    return new Parser(selector).parse();
  }

  private static final class Parser {
    private final String s;
    private int pos;

    Parser(String s) {
      this.s = s;
    }

    LabelSelectorString parse() {
      List<Requirement> out = new ArrayList<>();
      while (true) {
        out.add(requirement());
        skipSpace();
        if (pos == s.length()) {
          return new LabelSelectorString(out);
        }
        if (s.charAt(pos) != ',') {
          throw error("found '" + s.substring(pos) + "', expected: ',' or 'end of string'");
        }
        pos++;
      }
    }

    private Requirement requirement() {
      skipSpace();
      boolean negated = false;
      if (pos < s.length() && s.charAt(pos) == '!') {
        negated = true;
        pos++;
        skipSpace();
      }
      String key = word();
      if (key.isEmpty()) {
        throw error(
            pos < s.length()
                ? "found '" + s.charAt(pos) + "', expected: !, identifier, or 'end of string'"
                : "found '', expected: identifier after '!'");
      }
      checkKey(key);
      skipSpace();
      if (negated) {
        return new Requirement(key, Operator.DOES_NOT_EXIST, Set.of());
      }
      if (pos == s.length() || s.charAt(pos) == ',') {
        return new Requirement(key, Operator.EXISTS, Set.of());
      }
      Operator operator;
      if (s.startsWith("==", pos)) {
        operator = Operator.EQUALS;
        pos += 2;
      } else if (s.startsWith("!=", pos)) {
        operator = Operator.NOT_EQUALS;
        pos += 2;
      } else if (s.charAt(pos) == '=') {
        operator = Operator.EQUALS;
        pos++;
      } else if (s.charAt(pos) == '>') {
        operator = Operator.GREATER_THAN;
        pos++;
      } else if (s.charAt(pos) == '<') {
        operator = Operator.LESS_THAN;
        pos++;
      } else {
        String op = word();
        if ("in".equals(op)) {
          operator = Operator.IN;
        } else if ("notin".equals(op)) {
          operator = Operator.NOT_IN;
        } else {
          throw error(
              "found '"
                  + (op.isEmpty() ? s.substring(pos) : op)
                  + "', expected: in, notin, =, ==, !=, gt, lt");
        }
        return new Requirement(key, operator, set());
      }
      skipSpace();
      String value = word();
      checkValue(value);
      if ((operator == Operator.GREATER_THAN || operator == Operator.LESS_THAN)) {
        try {
          Long.parseLong(value);
        } catch (NumberFormatException e) {
          throw error("for 'Gt', 'Lt' operators, the value must be an integer: \"" + value + "\"");
        }
      }
      return new Requirement(key, operator, Set.of(value));
    }

    private Set<String> set() {
      skipSpace();
      if (pos >= s.length() || s.charAt(pos) != '(') {
        throw error("found '" + (pos >= s.length() ? "" : s.substring(pos)) + "', expected: '('");
      }
      pos++;
      Set<String> values = new LinkedHashSet<>();
      skipSpace();
      if (pos < s.length() && s.charAt(pos) == ')') {
        pos++;
        return values;
      }
      while (true) {
        skipSpace();
        String value = word();
        checkValue(value);
        values.add(value);
        skipSpace();
        if (pos >= s.length()) {
          throw error("found '', expected: ',', ')'");
        }
        char c = s.charAt(pos++);
        if (c == ')') {
          return values;
        }
        if (c != ',') {
          throw error("found '" + c + "', expected: ',', ')'");
        }
      }
    }

    /** An identifier or value: everything up to whitespace or a character of the grammar. */
    private String word() {
      int start = pos;
      while (pos < s.length()
          && "=!<>(),".indexOf(s.charAt(pos)) < 0
          && !Character.isWhitespace(s.charAt(pos))) {
        pos++;
      }
      return s.substring(start, pos);
    }

    private void skipSpace() {
      while (pos < s.length() && Character.isWhitespace(s.charAt(pos))) {
        pos++;
      }
    }

    private void checkKey(String key) {
      String problem = ObjectMetaRules.qualifiedNameProblem(key);
      if (problem != null) {
        throw error("key: Invalid value: \"" + key + "\": " + problem);
      }
    }

    private void checkValue(String value) {
      String problem = ObjectMetaRules.labelValueProblem(value);
      if (problem != null) {
        throw error("values[0]: Invalid value: \"" + value + "\": " + problem);
      }
    }

    private InvalidSelector error(String detail) {
      return new InvalidSelector(
          "unable to parse requirement: " + detail + " (in label selector \"" + s + "\")");
    }
  }
}
