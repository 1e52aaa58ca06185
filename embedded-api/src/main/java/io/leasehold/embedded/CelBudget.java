package io.leasehold.embedded;

import dev.cel.runtime.CelEvaluationException;
import dev.cel.runtime.CelRuntime;
import java.util.Map;

/**
 * A bound on what one CEL expression may cost, as the API server bounds it: an evaluation that
 * takes more steps than {@link #STEPS} is stopped and fails ("operation cancelled: actual cost
 * limit exceeded"), so one costly rule or admission policy cannot hold the API up. The steps
 * counted are the sub-expressions evaluated, the runtime counterpart of the API server's cost units
 * (its per-expression limit is 1,000,000).
 */
final class CelBudget {

  static final long STEPS = 1_000_000;

  /** Thrown when an evaluation runs out of its budget. */
  static final class Exceeded extends RuntimeException {
    Exceeded() {
      super("operation cancelled: actual cost limit exceeded");
    }
  }

  private CelBudget() {}

  /** Evaluates {@code program} with {@code vars}, stopping it past the budget. */
  static Object evaluate(CelRuntime.Program program, Map<String, ?> vars)
      throws CelEvaluationException {
    long[] steps = {0};
    try {
      return program.trace(
          vars,
          (expr, result) -> {
            if (++steps[0] > STEPS) {
              throw new Exceeded();
            }
          });
    } catch (CelEvaluationException e) {
      if (e.getCause() instanceof Exceeded exceeded) {
        throw exceeded;
      }
      throw e;
    }
  }
}
