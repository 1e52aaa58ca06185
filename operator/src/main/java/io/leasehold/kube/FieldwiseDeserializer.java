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
import io.fabric8.kubernetes.api.model.HasMetadata;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a Kubernetes object whole when it can; otherwise without each top-level field that cannot
 * be read, which it keeps, as read, among the object's additional properties (see {@link
 * TolerantSerialization}). Within {@code metadata} it goes one level down: a field of the metadata
 * that cannot be read is kept among the metadata's own additional properties, so the object keeps
 * its name and version. An object whose {@code apiVersion}, {@code kind}, name, namespace, UID or
 * version cannot be read cannot be told apart from another: reading it fails as before.
 */
final class FieldwiseDeserializer extends DelegatingDeserializer {

  private static final List<String> IDENTITY = List.of("apiVersion", "kind");
  private static final List<String> METADATA_IDENTITY =
      List.of("name", "namespace", "uid", "resourceVersion");

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
    Map<String, JsonNode> keptInMetadata = new LinkedHashMap<>();
    while (true) {
      try {
        Object value = read(rest, p, ctxt);
        for (Map.Entry<String, JsonNode> field : kept.entrySet()) {
          keep(value, field.getKey(), field.getValue());
        }
        if (!keptInMetadata.isEmpty() && value instanceof HasMetadata object) {
          keptInMetadata.forEach(object.getMetadata()::setAdditionalProperty);
        }
        return value;
      } catch (JsonMappingException e) {
        List<JsonMappingException.Reference> path = e.getPath();
        String field = path.isEmpty() ? null : path.get(0).getFieldName();
        if (field == null || IDENTITY.contains(field) || !rest.has(field)) {
          throw e;
        }
        if (kept.isEmpty() && keptInMetadata.isEmpty()) {
          rest = rest.deepCopy();
        }
        if (!"metadata".equals(field)) {
          kept.put(field, rest.remove(field));
          continue;
        }
        String inner = path.size() < 2 ? null : path.get(1).getFieldName();
        if (inner == null
            || METADATA_IDENTITY.contains(inner)
            || !(rest.get("metadata") instanceof ObjectNode metadata)
            || !metadata.has(inner)) {
          throw e;
        }
        keptInMetadata.put(inner, metadata.remove(inner));
      }
    }
  }

  private Object read(JsonNode tree, JsonParser p, DeserializationContext ctxt) throws IOException {
    try (JsonParser fields = tree.traverse(p.getCodec())) {
      fields.nextToken();
      return _delegatee.deserialize(fields, ctxt);
    }
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
