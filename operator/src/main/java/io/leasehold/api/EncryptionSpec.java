package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class EncryptionSpec extends KeepsUnknownFields {

  @JsonPropertyDescription(
      "Require OpenTofu client-side state encryption: the HTTP backend refuses plaintext writes"
          + " (409), and a plaintext state found in the Secrets raises a StateNotEncrypted"
          + " Warning. Default false.")
  @Default("false")
  private Boolean required = false;

  public boolean isRequired() {
    return Boolean.TRUE.equals(required);
  }

  public Boolean getRequired() {
    return required;
  }

  public void setRequired(Boolean required) {
    this.required = required;
  }
}
