package io.leasehold.kube;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.deser.std.DelegatingDeserializer;
import com.fasterxml.jackson.databind.introspect.AnnotatedField;
import com.fasterxml.jackson.databind.introspect.AnnotatedMember;
import com.fasterxml.jackson.databind.introspect.AnnotatedMethod;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a Kubernetes object whole when it can; otherwise without each top-level field that cannot
 * be read, which it keeps, as read, among the object's additional properties (see {@link
 * TolerantSerialization}). {@code apiVersion}, {@code kind} and {@code metadata} are never left
 * out: an object without them cannot be told apart from another, so reading it fails as before.
 */
final class FieldwiseDeserializer extends DelegatingDeserializer {

  private static final List<String> IDENTITY = List.of("apiVersion", "kind", "metadata");

  private final AnnotatedMember keep;

  FieldwiseDeserializer(JsonDeserializer<?> whole, AnnotatedMember keep) {
    super(whole);
    this.keep = keep;
  }

  @Override
  protected JsonDeserializer<?> newDelegatingInstance(JsonDeserializer<?> whole) {
    return new FieldwiseDeserializer(whole, keep);
  }

  @Override
  public Object deserialize(JsonParser p, DeserializationContext ctxt) throws IOException {
    JsonNode tree = ctxt.readTree(p);
    if (!tree.isObject()) {
      return read(tree, p, ctxt);
    }
    ObjectNode rest = (ObjectNode) tree;
    Map<String, JsonNode> kept = new LinkedHashMap<>();
    while (true) {
      try {
        Object value = read(rest, p, ctxt);
        for (Map.Entry<String, JsonNode> field : kept.entrySet()) {
          keep(value, field.getKey(), field.getValue());
        }
        return value;
      } catch (JsonMappingException e) {
        String field = topLevelField(e);
        if (field == null || IDENTITY.contains(field) || !rest.has(field)) {
          throw e;
        }
        if (kept.isEmpty()) {
          rest = rest.deepCopy();
        }
        kept.put(field, rest.remove(field));
      }
    }
  }

  private Object read(JsonNode tree, JsonParser p, DeserializationContext ctxt) throws IOException {
    try (JsonParser fields = tree.traverse(p.getCodec())) {
      fields.nextToken();
      return _delegatee.deserialize(fields, ctxt);
    }
  }

  private static String topLevelField(JsonMappingException e) {
    List<JsonMappingException.Reference> path = e.getPath();
    return path.isEmpty() ? null : path.get(0).getFieldName();
  }

  @SuppressWarnings("unchecked")
  private void keep(Object value, String field, JsonNode raw) throws JsonMappingException {
    try {
      if (keep instanceof AnnotatedMethod setter) {
        setter.callOnWith(value, field, raw);
      } else if (keep instanceof AnnotatedField map) {
        Object fields = map.getValue(value);
        if (fields instanceof Map<?, ?> m) {
          ((Map<String, Object>) m).put(field, raw);
        }
      }
    } catch (Exception e) {
      throw JsonMappingException.from(
          (JsonParser) null, "cannot keep field " + field + " of " + value.getClass(), e);
    }
  }
}
