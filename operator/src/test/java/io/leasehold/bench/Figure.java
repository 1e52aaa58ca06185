package io.leasehold.bench;

/**
 * One measured figure. {@code atMost}, when set, is the target the median must not exceed; the
 * report marks it met or missed.
 */
record Figure(String name, double value, String unit, Double atMost) {

  static Figure of(String name, double value, String unit) {
    return new Figure(name, value, unit, null);
  }

  static Figure target(String name, double value, String unit, double atMost) {
    return new Figure(name, value, unit, atMost);
  }
}
