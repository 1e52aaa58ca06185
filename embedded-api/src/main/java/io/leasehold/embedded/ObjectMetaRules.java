package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The API server's rules for {@code metadata}, which hold for every kind: names, labels,
 * annotations, finalizers and owner references. The rules are those of Kubernetes' object metadata
 * validation (k8s.io/apimachinery, "validation" of ObjectMeta and of identifiers), whose messages
 * are kept, so that kubectl prints the same thing against the embedded API as against a cluster.
 */
final class ObjectMetaRules {

  // RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', starting and ending with an
  // alphanumeric; at most 253 characters. Names of most objects.
  private static final String DNS1123_LABEL_FORMAT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
  private static final String DNS1123_SUBDOMAIN_FORMAT =
      DNS1123_LABEL_FORMAT + "(\\." + DNS1123_LABEL_FORMAT + ")*";
  private static final Pattern DNS1123_SUBDOMAIN = Pattern.compile(DNS1123_SUBDOMAIN_FORMAT);
  private static final Pattern DNS1123_LABEL = Pattern.compile(DNS1123_LABEL_FORMAT);
  static final int DNS1123_SUBDOMAIN_MAX = 253;
  static final int DNS1123_LABEL_MAX = 63;

  // Qualified names (label and annotation keys, finalizers): an optional DNS subdomain prefix and
  // '/', then a name part of alphanumerics, '-', '_' and '.', starting and ending with an
  // alphanumeric, at most 63 characters.
  private static final String QUALIFIED_NAME_FORMAT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
  private static final Pattern QUALIFIED_NAME = Pattern.compile(QUALIFIED_NAME_FORMAT);
  // Label values: empty, or the name part's format, at most 63 characters.
  private static final Pattern LABEL_VALUE = Pattern.compile("(" + QUALIFIED_NAME_FORMAT + ")?");

  /** The total size of an object's annotations (keys and values): 256 KiB. */
  static final int TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

  private static final String SUBDOMAIN_MESSAGE =
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
          + " '.', and must start and end with an alphanumeric character (e.g. 'example.com',"
          + " regex used for validation is '"
          + DNS1123_SUBDOMAIN_FORMAT
          + "')";
  private static final String LABEL_MESSAGE =
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and"
          + " must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc',"
          + " regex used for validation is '"
          + DNS1123_LABEL_FORMAT
          + "')";
  private static final String NAME_PART_MESSAGE =
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end"
          + " with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex"
          + " used for validation is '"
          + QUALIFIED_NAME_FORMAT
          + "')";
  private static final String LABEL_VALUE_MESSAGE =
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
          + " '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or"
          + " 'my_value',  or '12345', regex used for validation is '("
          + QUALIFIED_NAME_FORMAT
          + ")?')";

  private ObjectMetaRules() {}

  /** Why {@code name} is not an RFC 1123 subdomain, or null. */
  static String subdomainProblem(String name) {
    if (name.length() > DNS1123_SUBDOMAIN_MAX) {
      return "must be no more than " + DNS1123_SUBDOMAIN_MAX + " characters";
    }
    return DNS1123_SUBDOMAIN.matcher(name).matches() ? null : SUBDOMAIN_MESSAGE;
  }

  /** Why {@code name} is not an RFC 1123 label, or null. */
  static String labelProblem(String name) {
    if (name.length() > DNS1123_LABEL_MAX) {
      return "must be no more than " + DNS1123_LABEL_MAX + " characters";
    }
    return DNS1123_LABEL.matcher(name).matches() ? null : LABEL_MESSAGE;
  }

  /** Why {@code key} is not a qualified name (label or annotation key, finalizer), or null. */
  static String qualifiedNameProblem(String key) {
    String name = key;
    int slash = key.indexOf('/');
    if (slash >= 0) {
      String prefix = key.substring(0, slash);
      name = key.substring(slash + 1);
      if (prefix.isEmpty()) {
        return "prefix part must be non-empty";
      }
      String problem = subdomainProblem(prefix);
      if (problem != null) {
        return "prefix part " + problem;
      }
      if (name.contains("/")) {
        return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and"
            + " must start and end with an alphanumeric character, with an optional DNS subdomain"
            + " prefix and '/' (e.g. 'example.com/MyName')";
      }
    }
    if (name.isEmpty()) {
      return "name part must be non-empty";
    }
    if (name.length() > DNS1123_LABEL_MAX) {
      return "name part must be no more than " + DNS1123_LABEL_MAX + " characters";
    }
    return QUALIFIED_NAME.matcher(name).matches() ? null : NAME_PART_MESSAGE;
  }

  /** Why {@code value} is not a label value, or null. */
  static String labelValueProblem(String value) {
    if (value.length() > DNS1123_LABEL_MAX) {
      return "must be no more than " + DNS1123_LABEL_MAX + " characters";
    }
    return LABEL_VALUE.matcher(value).matches() ? null : LABEL_VALUE_MESSAGE;
  }

  /**
   * Every rule of {@code metadata} that {@code object} breaks, for a resource of {@code plural} in
   * {@code group}.
   */
  static List<Cause> check(String group, String plural, JsonNode object) {
    List<Cause> causes = new ArrayList<>();
    JsonNode metadata = object.path("metadata");
    String name = metadata.path("name").asText("");
    String generateName = metadata.path("generateName").asText("");
    boolean namespace = group.isEmpty() && "namespaces".equals(plural);
    if (name.isEmpty()) {
      causes.add(Cause.required("metadata.name", "name or generateName is required"));
    } else {
      String problem = namespace ? labelProblem(name) : subdomainProblem(name);
      if (problem != null) {
        if (!generateName.isEmpty() && name.startsWith(generateName)) {
          causes.add(Cause.invalid("metadata.generateName", generateName, problem));
        }
        causes.add(Cause.invalid("metadata.name", name, problem));
      }
      if ("batch".equals(group) && "jobs".equals(plural) && name.length() > DNS1123_LABEL_MAX) {
        // A Job's name is the value of its pods' job-name label.
        causes.add(
            Cause.invalid(
                "spec.template.labels",
                name,
                "must be no more than " + DNS1123_LABEL_MAX + " characters"));
      }
    }
    checkLabels(metadata.path("labels"), causes);
    checkAnnotations(metadata.path("annotations"), causes);
    for (int i = 0; i < metadata.path("finalizers").size(); i++) {
      String finalizer = metadata.path("finalizers").get(i).asText();
      String problem = qualifiedNameProblem(finalizer);
      if (problem != null) {
        causes.add(Cause.invalid("metadata.finalizers[" + i + "]", finalizer, problem));
        causes.add(
            Cause.invalid(
                "metadata.finalizers",
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified"));
      }
    }
    checkOwners(metadata.path("ownerReferences"), causes);
    return causes;
  }

  private static void checkLabels(JsonNode labels, List<Cause> causes) {
    Iterator<Map.Entry<String, JsonNode>> fields = labels.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> label = fields.next();
      String keyProblem = qualifiedNameProblem(label.getKey());
      if (keyProblem != null) {
        causes.add(Cause.invalid("metadata.labels", label.getKey(), keyProblem));
      }
      String value = label.getValue().asText("");
      String valueProblem = labelValueProblem(value);
      if (valueProblem != null) {
        causes.add(Cause.invalid("metadata.labels", value, valueProblem));
      }
    }
  }

  private static void checkAnnotations(JsonNode annotations, List<Cause> causes) {
    long total = 0;
    Iterator<Map.Entry<String, JsonNode>> fields = annotations.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> annotation = fields.next();
      String problem = qualifiedNameProblem(annotation.getKey().toLowerCase(java.util.Locale.ROOT));
      if (problem != null) {
        causes.add(Cause.invalid("metadata.annotations", annotation.getKey(), problem));
      }
      total += annotation.getKey().getBytes(StandardCharsets.UTF_8).length;
      total += annotation.getValue().asText("").getBytes(StandardCharsets.UTF_8).length;
    }
    if (total > TOTAL_ANNOTATION_SIZE_LIMIT) {
      causes.add(
          new Cause(
              "metadata.annotations",
              "FieldValueTooLong",
              "Too long: must have at most " + TOTAL_ANNOTATION_SIZE_LIMIT + " bytes"));
    }
  }

  private static void checkOwners(JsonNode owners, List<Cause> causes) {
    int controllers = 0;
    for (int i = 0; i < owners.size(); i++) {
      JsonNode owner = owners.get(i);
      String at = "metadata.ownerReferences[" + i + "]";
      for (String field : List.of("apiVersion", "kind", "name")) {
        if (owner.path(field).asText("").isEmpty()) {
          causes.add(Cause.invalid(at + "." + field, "", field + " must not be empty"));
        }
      }
      if (owner.path("uid").asText("").isEmpty()) {
        causes.add(Cause.invalid(at + ".uid", "", "uid must not be empty"));
      }
      if (owner.path("controller").asBoolean(false)) {
        controllers++;
      }
    }
    if (controllers > 1) {
      causes.add(
          Cause.invalid(
              "metadata.ownerReferences",
              owners.toString(),
              "Only one reference can have Controller set to true"));
    }
  }

  /**
   * The rules of an update: the name, namespace and uid of the stored object cannot change, and no
   * finalizer may be added to an object being deleted.
   */
  static List<Cause> checkUpdate(JsonNode stored, JsonNode updated) {
    List<Cause> causes = new ArrayList<>();
    JsonNode before = stored.path("metadata");
    JsonNode after = updated.path("metadata");
    String uid = after.path("uid").asText("");
    if (!uid.isEmpty() && !uid.equals(before.path("uid").asText(""))) {
      causes.add(Cause.invalid("metadata.uid", uid, "field is immutable"));
    }
    if (before.has("deletionTimestamp")) {
      List<String> old = new ArrayList<>();
      before.path("finalizers").forEach(f -> old.add(f.asText()));
      for (JsonNode f : after.path("finalizers")) {
        if (!old.contains(f.asText())) {
          causes.add(
              Cause.forbidden(
                  "metadata.finalizers",
                  "no new finalizers can be added if the object is being deleted, found new"
                      + " finalizers []string{\""
                      + f.asText()
                      + "\"}"));
          break;
        }
      }
    }
    return causes;
  }
}
