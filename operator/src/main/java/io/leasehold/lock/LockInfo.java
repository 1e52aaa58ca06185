package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.DisplayText;
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

  /** Longest lock ID taken: Terraform's are UUIDs; the ID is the Lease's holderIdentity. */
  public static final int MAX_ID = 256;

  /** Longest free-text field (Info, Path); the others are shorter. */
  public static final int MAX_TEXT = 4096;

  private static final int MAX_SHORT = 256;

  /**
   * Why this LockInfo is not taken, if it is not: a field too long for a Lease annotation (the API
   * server allows 256 KiB for all of them), or a lock ID with characters that are not printable.
   */
  public Optional<String> problem() {
    Optional<String> badId = idProblem(id);
    if (badId.isPresent()) {
      return badId;
    }
    String[][] fields = {
      {"Operation", operation, "" + MAX_SHORT},
      {"Who", who, "" + MAX_SHORT * 4},
      {"Version", version, "" + MAX_SHORT},
      {"Created", created, "" + MAX_SHORT},
      {"Info", info, "" + MAX_TEXT},
      {"Path", path, "" + MAX_TEXT},
    };
    for (String[] f : fields) {
      if (f[1] != null && f[1].length() > Integer.parseInt(f[2])) {
        return Optional.of(
            f[0] + " is " + f[1].length() + " characters long; at most " + f[2] + " are taken");
      }
    }
    return Optional.empty();
  }

  /** Why {@code id} is not a lock ID leasehold takes, if it is not. */
  public static Optional<String> idProblem(String id) {
    if (id == null || id.isBlank()) {
      return Optional.of("the lock ID is empty");
    }
    if (id.length() > MAX_ID) {
      return Optional.of(
          "the lock ID is " + id.length() + " characters long; at most " + MAX_ID + " are taken");
    }
    if (DisplayText.hasUnsafe(id)) {
      return Optional.of("the lock ID holds control or invisible formatting characters");
    }
    return Optional.empty();
  }

  public String toJson() {
    try {
      return MAPPER.writeValueAsString(this);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
