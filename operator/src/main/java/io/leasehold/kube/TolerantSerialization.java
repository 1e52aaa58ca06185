package io.leasehold.kube;

import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.DeserializationConfig;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.deser.BeanDeserializerModifier;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.introspect.AnnotatedMember;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.databind.module.SimpleModule;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import java.time.temporal.Temporal;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;

/**
 * How leasehold reads the Kubernetes objects it watches, so that one object it cannot fully read
 * never stops an informer (and with it the whole operator).
 *
 * <p>Fabric8's own serialization binds strictly: Jackson fails on a field a class does not declare
 * (Fabric8's classes accept those only because each keeps them in {@code additionalProperties}),
 * and on a value of the wrong type anywhere in an object. An informer whose watch event or list
 * cannot be read stops, and the Java Operator SDK then ends the process. An API server that did not
 * check an object against its schema, or a CRD newer than this operator, is enough.
 *
 * <p>Here an object whose top-level field (its {@code spec}, {@code status}, {@code data}, ...) or
 * field of its metadata cannot be read is read without that field: the field's typed value stays
 * null and its JSON is kept, as it was, among the additional properties of the object (of its
 * metadata), where Fabric8 writes it back in the field's place on any write of the object. {@link
 * #unreadable} tells callers which field could not be read and what it should have been, by its
 * path and type only, never by its value: they leave such an object alone until it is corrected.
 */
public final class TolerantSerialization extends KubernetesSerialization {

  /** Binds kept fields again, strictly, only to say why they could not be read. */
  private static final ObjectMapper STRICT = strictMapper();

  private static final Map<Class<?>, Shape> SHAPES = new ConcurrentHashMap<>();

  public TolerantSerialization() {
    super(new ObjectMapper(), true);
    // Fabric8 logs a kept value when it writes it back; nothing read from an object is logged.
    getUnmatchedFieldTypeModule().setLogWarnings(false);
  }

  @Override
  protected void configureMapper(ObjectMapper mapper) {
    super.configureMapper(mapper);
    mapper.registerModule(
        new SimpleModule("leasehold-tolerant-reads")
            .setDeserializerModifier(
                new BeanDeserializerModifier() {
                  @Override
                  public JsonDeserializer<?> modifyDeserializer(
                      DeserializationConfig config,
                      BeanDescription description,
                      JsonDeserializer<?> deserializer) {
                    AnnotatedMember keep = description.findAnySetterAccessor();
                    if (keep == null
                        || !HasMetadata.class.isAssignableFrom(description.getBeanClass())) {
                      return deserializer;
                    }
                    keep.fixAccess(
                        config.isEnabled(MapperFeature.OVERRIDE_PUBLIC_ACCESS_MODIFIERS));
                    return new FieldwiseDeserializer(deserializer, keep);
                  }
                }));
  }

  /**
   * {@code client} itself when it reads with this serialization, otherwise a client of the same
   * API, with the same configuration, that does: the caller closes it when it is not {@code
   * client}.
   */
  public static KubernetesClient tolerant(KubernetesClient client) {
    if (client.getKubernetesSerialization() instanceof TolerantSerialization) {
      return client;
    }
    return new KubernetesClientBuilder()
        .withConfig(client.getConfiguration())
        .withKubernetesSerialization(new TolerantSerialization())
        .build();
  }

  /**
   * A field that could not be read.
   *
   * @param field its path, names and indexes only: {@code spec.lock.leaseDurationSeconds}
   * @param expected what its value should have been ({@code an integer}), when that is known
   */
  public record Unreadable(String field, Optional<String> expected) {

    /** {@code spec.history.keep cannot be read: it should be an integer}. */
    public String says() {
      return field + " cannot be read" + expected.map(e -> ": it should be " + e).orElse("");
    }
  }

  /**
   * The first field of {@code object} that could not be read when it was read, by its path and the
   * type it should have, never its value; empty when every field was read.
   */
  public static Optional<Unreadable> unreadable(Object object) {
    if (object == null) {
      return Optional.empty();
    }
    Optional<Unreadable> top = unreadableField(object, "");
    if (top.isPresent() || !(object instanceof HasMetadata o) || o.getMetadata() == null) {
      return top;
    }
    return unreadableField(o.getMetadata(), "metadata.");
  }

  private static Optional<Unreadable> unreadableField(Object object, String prefix) {
    Shape shape = SHAPES.computeIfAbsent(object.getClass(), TolerantSerialization::shapeOf);
    if (shape.kept() == null) {
      return Optional.empty();
    }
    Object value;
    try {
      value = shape.kept().getValue(object);
    } catch (RuntimeException e) {
      return Optional.empty();
    }
    if (!(value instanceof Map<?, ?> kept) || kept.isEmpty()) {
      return Optional.empty();
    }
    for (Map.Entry<String, JavaType> field : shape.fields().entrySet()) {
      Object raw = kept.get(field.getKey());
      if (raw instanceof JsonNode node) {
        return Optional.of(describe(prefix + field.getKey(), field.getValue(), node));
      }
    }
    return Optional.empty();
  }

  /** The declared fields of a class and where it keeps the others. */
  private record Shape(AnnotatedMember kept, Map<String, JavaType> fields) {}

  private static Shape shapeOf(Class<?> type) {
    BeanDescription description =
        STRICT.getDeserializationConfig().introspect(STRICT.constructType(type));
    Map<String, JavaType> fields = new LinkedHashMap<>();
    for (BeanPropertyDefinition p : description.findProperties()) {
      if (p.couldDeserialize()) {
        fields.put(p.getName(), p.getPrimaryType());
      }
    }
    AnnotatedMember getter =
        STRICT.getSerializationConfig().introspect(STRICT.constructType(type)).findAnyGetter();
    if (getter != null) {
      getter.fixAccess(true);
    }
    return new Shape(getter, fields);
  }

  private static Unreadable describe(String field, JavaType type, JsonNode node) {
    try {
      STRICT.readerFor(type).readValue(STRICT.treeAsTokens(node));
      return new Unreadable(shown(field), Optional.empty());
    } catch (MismatchedInputException e) {
      return new Unreadable(pathOf(field, e), Optional.of(expected(e.getTargetType())));
    } catch (JsonMappingException e) {
      return new Unreadable(pathOf(field, e), Optional.empty());
    } catch (java.io.IOException | RuntimeException e) {
      return new Unreadable(shown(field), Optional.empty());
    }
  }

  /** {@code spec.lock.leaseDurationSeconds}, {@code status.queue[2].position}: names only. */
  static String pathOf(String field, JsonMappingException e) {
    StringBuilder path = new StringBuilder(shown(field));
    for (JsonMappingException.Reference r : e.getPath()) {
      if (r.getFieldName() != null) {
        path.append('.').append(shown(r.getFieldName()));
      } else if (r.getIndex() >= 0) {
        path.append('[').append(r.getIndex()).append(']');
      }
    }
    return path.toString();
  }

  /** A field name as it may be shown: printable, and not too long. */
  private static String shown(String name) {
    String printable =
        name.codePoints()
            .map(
                c ->
                    Character.isISOControl(c) || Character.getType(c) == Character.FORMAT ? '?' : c)
            .collect(StringBuilder::new, StringBuilder::appendCodePoint, StringBuilder::append)
            .toString();
    return printable.length() > 64 ? printable.substring(0, 63) + "…" : printable;
  }

  /** What a value of {@code type} looks like, in words. */
  static String expected(Class<?> type) {
    if (type == null) {
      return "another type";
    }
    if (type == Integer.class
        || type == int.class
        || type == Long.class
        || type == long.class
        || type == Short.class
        || type == short.class
        || type == java.math.BigInteger.class) {
      return "an integer";
    }
    if (Number.class.isAssignableFrom(type) || type == double.class || type == float.class) {
      return "a number";
    }
    if (type == Boolean.class || type == boolean.class) {
      return "true or false";
    }
    if (CharSequence.class.isAssignableFrom(type)) {
      return "a string";
    }
    if (type.isEnum()) {
      return "one of "
          + Arrays.stream(type.getEnumConstants())
              .map(c -> ((Enum<?>) c).name())
              .collect(Collectors.joining(", "));
    }
    if (type.isArray() || Collection.class.isAssignableFrom(type)) {
      return "a list";
    }
    if (Temporal.class.isAssignableFrom(type)) {
      return "a time";
    }
    return "an object";
  }

  private static ObjectMapper strictMapper() {
    ObjectMapper mapper = new ObjectMapper();
    new KubernetesSerialization(mapper, false);
    return mapper;
  }
}
