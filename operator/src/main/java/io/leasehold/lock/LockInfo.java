package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Optional;

/**
 * Terraform's LockInfo, field for field as Terraform marshals it into the Lease annotation {@code
 * app.terraform.io/lock-info} and into HTTP backend lock bodies.
 */
@JsonInclude(JsonInclude.Include.ALWAYS)
@JsonIgnoreProperties(ignoreUnknown = true)
public record LockInfo(
    @JsonProperty("ID") String id,
    @JsonProperty("Operation") String operation,
    @JsonProperty("Info") String info,
    @JsonProperty("Who") String who,
    @JsonProperty("Version") String version,
    @JsonProperty("Created") String created,
    @JsonProperty("Path") String path) {

  private static final ObjectMapper MAPPER = new ObjectMapper();

  /** Parses LockInfo JSON; empty when it is absent or not LockInfo. */
  public static Optional<LockInfo> parse(String json) {
    if (json == null || json.isBlank()) {
      return Optional.empty();
    }
    try {
      return Optional.ofNullable(MAPPER.readValue(json, LockInfo.class));
    } catch (JsonProcessingException e) {
      return Optional.empty();
    }
  }

  public String toJson() {
    try {
      return MAPPER.writeValueAsString(this);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
