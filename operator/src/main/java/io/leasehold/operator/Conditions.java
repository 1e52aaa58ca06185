package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/** Status conditions that keep their transition time while their status stays the same. */
final class Conditions {

  static final String READY = "Ready";
  static final String LOCKED = "Locked";
  static final String DEGRADED = "Degraded";

  private final List<Condition> previous;
  private final List<Condition> next = new ArrayList<>();
  private final long generation;

  Conditions(List<Condition> previous, long generation) {
    this.previous = previous == null ? List.of() : previous;
    this.generation = generation;
  }

  Conditions set(String type, boolean status, String reason, String message) {
    String value = status ? "True" : "False";
    String since =
        find(previous, type)
            .filter(c -> value.equals(c.getStatus()))
            .map(Condition::getLastTransitionTime)
            .orElseGet(() -> Instant.now().truncatedTo(ChronoUnit.SECONDS).toString());
    next.removeIf(c -> type.equals(c.getType()));
    next.add(
        new ConditionBuilder()
            .withType(type)
            .withStatus(value)
            .withReason(reason)
            .withMessage(message)
            .withObservedGeneration(generation)
            .withLastTransitionTime(since)
            .build());
    return this;
  }

  List<Condition> build() {
    return List.copyOf(next);
  }

  static Optional<Condition> find(List<Condition> conditions, String type) {
    if (conditions == null) {
      return Optional.empty();
    }
    return conditions.stream().filter(c -> Objects.equals(type, c.getType())).findFirst();
  }

  static boolean isTrue(List<Condition> conditions, String type) {
    return find(conditions, type).map(c -> "True".equals(c.getStatus())).orElse(false);
  }

  static Optional<String> reason(List<Condition> conditions, String type) {
    return find(conditions, type).map(Condition::getReason);
  }
}
