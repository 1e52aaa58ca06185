package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.cel.bundle.Cel;
import dev.cel.bundle.CelFactory;
import dev.cel.common.CelAbstractSyntaxTree;
import dev.cel.common.CelMutableAst;
import dev.cel.common.CelValidationException;
import dev.cel.common.ast.CelConstant;
import dev.cel.common.ast.CelExpr;
import dev.cel.common.ast.CelMutableExpr;
import dev.cel.common.navigation.CelNavigableMutableAst;
import dev.cel.common.navigation.CelNavigableMutableExpr;
import dev.cel.common.types.SimpleType;
import dev.cel.extensions.CelExtensions;
import dev.cel.parser.CelStandardMacro;
import dev.cel.runtime.CelEvaluationException;
import dev.cel.runtime.CelRuntime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The CEL of admission policies as the API server evaluates it: the variables {@code object},
 * {@code oldObject}, {@code request}, {@code params}, {@code namespaceObject} and {@code
 * variables}, the standard macros and the strings library. Kubernetes' own library functions
 * ({@code authorizer}, quantities, URLs) are not available: an expression that uses them fails, and
 * its policy's failurePolicy decides.
 */
final class PolicyExpressions {

  /** An expression that does not compile or fails when evaluated. */
  static final class ExpressionException extends Exception {
    ExpressionException(String expression, String problem, Throwable cause) {
      super("expression '" + expression.strip() + "' " + problem, cause);
    }
  }

  private static final Cel CEL =
      CelFactory.standardCelBuilder()
          .setStandardMacros(CelStandardMacro.STANDARD_MACROS)
          .addCompilerLibraries(CelExtensions.strings())
          .addRuntimeLibraries(CelExtensions.strings())
          .addVar("object", SimpleType.DYN)
          .addVar("oldObject", SimpleType.DYN)
          .addVar("request", SimpleType.DYN)
          .addVar("params", SimpleType.DYN)
          .addVar("namespaceObject", SimpleType.DYN)
          .addVar("variables", SimpleType.DYN)
          .build();

  private final Map<String, CelRuntime.Program> programs = new ConcurrentHashMap<>();

  /** Evaluates {@code expression} with {@code vars} (JSON values); returns a JSON value. */
  JsonNode evaluate(String expression, Map<String, Object> vars) throws ExpressionException {
    CelRuntime.Program program = programs.get(expression);
    if (program == null) {
      program = compile(expression);
      programs.put(expression, program);
    }
    try {
      return toJson(CelBudget.evaluate(program, vars));
    } catch (CelEvaluationException | RuntimeException e) {
      throw new ExpressionException(expression, "resulted in error: " + e.getMessage(), e);
    }
  }

  /** Evaluates a boolean expression (validations, match conditions). */
  boolean test(String expression, Map<String, Object> vars) throws ExpressionException {
    JsonNode result = evaluate(expression, vars);
    if (!result.isBoolean()) {
      throw new ExpressionException(expression, "must evaluate to bool, not " + result, null);
    }
    return result.booleanValue();
  }

  /**
   * Mutations build objects with typed literals, {@code Object{spec: Object.spec{...}}} and {@code
   * JSONPatch{op: ..., path: ...}}, whose types the API server derives from the resource's schema.
   * Here they become maps with the same fields, which is what is merged or patched.
   */
  private static CelRuntime.Program compile(String expression) throws ExpressionException {
    try {
      CelAbstractSyntaxTree parsed = CEL.parse(expression).getAst();
      CelMutableAst ast = CelMutableAst.fromCelAst(parsed);
      long nextId = ast.expr().id() + 1_000_000L;
      List<CelNavigableMutableExpr> structs =
          CelNavigableMutableAst.fromAst(ast)
              .getRoot()
              .allNodes()
              .filter(n -> n.getKind() == CelExpr.ExprKind.Kind.STRUCT)
              .toList();
      for (CelNavigableMutableExpr node : structs) {
        CelMutableExpr struct = node.expr();
        List<CelMutableExpr.CelMutableMap.Entry> entries = new ArrayList<>();
        for (CelMutableExpr.CelMutableStruct.Entry field : struct.struct().entries()) {
          CelMutableExpr key =
              CelMutableExpr.ofConstant(nextId++, CelConstant.ofValue(field.fieldKey()));
          entries.add(CelMutableExpr.CelMutableMap.Entry.create(field.id(), key, field.value()));
        }
        struct.setMap(CelMutableExpr.CelMutableMap.create(entries));
      }
      return CEL.createProgram(CEL.check(ast.toParsedAst()).getAst());
    } catch (CelValidationException | CelEvaluationException | RuntimeException e) {
      throw new ExpressionException(expression, "does not compile: " + e.getMessage(), e);
    }
  }

  /** A value CEL returned, as JSON. */
  static JsonNode toJson(Object value) {
    JsonNodeFactory json = JsonNodeFactory.instance;
    if (value == null
        || value instanceof dev.cel.common.values.NullValue
        || value instanceof com.google.protobuf.NullValue) {
      return json.nullNode();
    }
    if (value instanceof Boolean b) {
      return json.booleanNode(b);
    }
    if (value instanceof Long l) {
      return json.numberNode(l);
    }
    if (value instanceof Integer i) {
      return json.numberNode(i.longValue());
    }
    if (value instanceof Double d) {
      return json.numberNode(d);
    }
    if (value instanceof com.google.common.primitives.UnsignedLong u) {
      return json.numberNode(u.bigIntegerValue());
    }
    if (value instanceof String s) {
      return json.textNode(s);
    }
    if (value instanceof Map<?, ?> map) {
      ObjectNode object = json.objectNode();
      map.forEach((k, v) -> object.set(String.valueOf(k), toJson(v)));
      return object;
    }
    if (value instanceof Iterable<?> list) {
      ArrayNode array = json.arrayNode();
      list.forEach(v -> array.add(toJson(v)));
      return array;
    }
    return json.textNode(String.valueOf(value));
  }
}
