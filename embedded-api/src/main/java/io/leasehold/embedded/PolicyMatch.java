package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;
import java.util.List;

/**
 * Which admission policy bindings a request falls under, as the API server decides it: resource
 * rules (groups, versions, operations, resources with their {@code *} forms, names) minus the
 * excluded ones, then namespace and object label selectors.
 */
final class PolicyMatch {

  private PolicyMatch() {}

  /**
   * Whether the policy's matchConstraints and the binding's matchResources take in a request for
   * {@code operation} on {@code t} by their resource rules.
   */
  static boolean rules(
      JsonNode policy, JsonNode binding, AdmissionPolicies.Target t, String operation) {
    JsonNode constraints = policy.at("/spec/matchConstraints");
    if (!rulesMatch(constraints, t, operation, true)) {
      return false;
    }
    JsonNode resources = binding.at("/spec/matchResources");
    return resources.isMissingNode()
        || resources.isNull()
        || rulesMatch(resources, t, operation, false);
  }

  /** resourceRules match (or are absent, for a binding) and no excludeResourceRules does. */
  private static boolean rulesMatch(
      JsonNode resources, AdmissionPolicies.Target t, String operation, boolean rulesRequired) {
    JsonNode rules = resources.path("resourceRules");
    boolean included =
        rules.isArray() && !rules.isEmpty() ? anyRuleMatches(rules, t, operation) : !rulesRequired;
    return included && !anyRuleMatches(resources.path("excludeResourceRules"), t, operation);
  }

  private static boolean anyRuleMatches(
      JsonNode rules, AdmissionPolicies.Target t, String operation) {
    for (JsonNode rule : rules) {
      String resource =
          t.subresource() == null ? t.resource() : t.resource() + "/" + t.subresource();
      if (matches(rule.path("apiGroups"), t.group())
          && matches(rule.path("apiVersions"), t.version())
          && matches(rule.path("operations"), operation)
          && matchesResource(rule.path("resources"), t.resource(), resource)
          && (rule.path("resourceNames").isEmpty()
              || t.name() != null && matches(rule.path("resourceNames"), t.name()))) {
        return true;
      }
    }
    return false;
  }

  private static boolean matches(JsonNode values, String value) {
    for (JsonNode v : values) {
      if ("*".equals(v.asText()) || v.asText().equals(value)) {
        return true;
      }
    }
    return false;
  }

  private static boolean matchesResource(JsonNode values, String plural, String resource) {
    for (JsonNode v : values) {
      String s = v.asText();
      if (s.equals(resource)
          || "*".equals(s) && resource.equals(plural)
          || "*/*".equals(s)
          || s.equals(plural + "/*") && !resource.equals(plural)
          || s.startsWith("*/") && resource.endsWith(s.substring(1))) {
        return true;
      }
    }
    return false;
  }

  /**
   * Whether the namespace and object selectors of both take in the object: its namespace (for a
   * namespaced resource), and the object's labels or, on update, the stored object's.
   */
  static boolean selectors(
      JsonNode policy,
      JsonNode binding,
      boolean namespaced,
      JsonNode namespaceObject,
      JsonNode object,
      JsonNode oldObject) {
    for (JsonNode resources :
        List.of(policy.at("/spec/matchConstraints"), binding.at("/spec/matchResources"))) {
      if (namespaced
          && !LabelSelector.matches(
              resources.path("namespaceSelector"), namespaceObject.at("/metadata/labels"))) {
        return false;
      }
      JsonNode objectSelector = resources.path("objectSelector");
      JsonNode old = oldObject == null ? NullNode.getInstance() : oldObject;
      if (!LabelSelector.matches(objectSelector, object.at("/metadata/labels"))
          && !(old.isObject()
              && LabelSelector.matches(objectSelector, old.at("/metadata/labels")))) {
        return false;
      }
    }
    return true;
  }
}
