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

  /**
   * The most a lock ID of {@value #MAX_ID} characters takes as stored: 3 bytes a character (no
   * character a lock ID may hold is escaped to more).
   */
  public static final int MAX_ID_STORED = 3 * MAX_ID;

  /** Most bytes Info and Path take as stored (JSON-escaped UTF-8). */
  public static final int MAX_TEXT = 4096;

  /** Most bytes Who takes as stored. */
  public static final int MAX_WHO = 1024;

  /** Most bytes Operation, Version and Created take as stored. */
  public static final int MAX_SHORT = 256;

  /**
   * The most a LockInfo taken takes as stored, as the JSON of the lock-info annotation: every field
   * at its limit, and the field names.
   */
  public static final int MAX_STORED =
      new LockInfo("", "", "", "", "", "", "").toJson().length()
          + MAX_ID_STORED
          + 3 * MAX_SHORT
          + MAX_WHO
          + 2 * MAX_TEXT;

  /**
   * Why this LockInfo is not taken, if it is not: a field too long for the lock Lease, whose
   * annotations the API server limits to 256 KiB all together (see {@link LeaseSize}), or a lock ID
   * with characters that are not printable. Fields are measured as they are stored: in UTF-8 bytes,
   * escapes included ({@code \u0001} takes 6). They are stored as sent or refused, never cut:
   * Terraform reads the holder's LockInfo back.
   */
  public Optional<String> problem() {
    Optional<String> badId = idProblem(id);
    if (badId.isPresent()) {
      return badId;
    }
    Object[][] fields = {
      {"Operation", operation, MAX_SHORT},
      {"Who", who, MAX_WHO},
      {"Version", version, MAX_SHORT},
      {"Created", created, MAX_SHORT},
      {"Info", info, MAX_TEXT},
      {"Path", path, MAX_TEXT},
    };
    for (Object[] f : fields) {
      String value = (String) f[1];
      int limit = (Integer) f[2];
      long stored = LeaseSize.json(value);
      if (stored > limit) {
        return Optional.of(
            f[0]
                + " is "
                + value.length()
                + " characters long, "
                + stored
                + " bytes as stored (UTF-8, JSON escapes included); at most "
                + limit
                + " bytes are taken");
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
