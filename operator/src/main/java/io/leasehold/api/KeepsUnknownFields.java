package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonAnyGetter;
import com.fasterxml.jackson.annotation.JsonAnySetter;
import com.fasterxml.jackson.annotation.JsonIgnore;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A part of the TerraformState API that keeps the fields it does not know: those a newer CRD or a
 * newer leasehold put there are read without complaint and written back as they were, as Fabric8's
 * own Kubernetes classes keep theirs. Without it, reading such a field fails, and with it the
 * informer that read it.
 *
 * <p>The CRD stays structural: the generator adds no {@code x-kubernetes-preserve-unknown-fields}
 * for these (its {@code implicitPreserveUnknownFields} is off), so an API server still prunes what
 * the CRD it serves does not declare.
 */
public abstract class KeepsUnknownFields {

  private final Map<String, Object> unknownFields = new LinkedHashMap<>();

  /** The fields read that this class does not declare, in the order read. */
  @JsonAnyGetter
  @JsonIgnore
  public Map<String, Object> getUnknownFields() {
    return unknownFields;
  }

  @JsonAnySetter
  public void setUnknownField(String name, Object value) {
    unknownFields.put(name, value);
  }

  /** Keeps the fields {@code from} has that this does not (a newer version's), as they are. */
  public void keepUnknownFieldsOf(KeepsUnknownFields from) {
    if (from != null) {
      from.unknownFields.forEach(unknownFields::putIfAbsent);
    }
  }
}
