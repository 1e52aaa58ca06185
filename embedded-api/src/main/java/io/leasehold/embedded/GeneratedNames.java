package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.http.MockResponse;
import java.security.SecureRandom;
import java.util.Optional;
import java.util.function.Function;

/**
 * {@code metadata.generateName}: the prefix followed by five random lowercase letters and digits,
 * as an API server picks them (no vowels, so no words; no 0, 1, 3: easy to read), tried again when
 * the name is taken.
 */
final class GeneratedNames {

  private static final String ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
  private static final int LENGTH = 5;
  private static final int ATTEMPTS = 8;
  private static final int MAX_NAME = 253;
  private static final SecureRandom RANDOM = new SecureRandom();

  private GeneratedNames() {}

  static String suffix() {
    StringBuilder b = new StringBuilder(LENGTH);
    for (int i = 0; i < LENGTH; i++) {
      b.append(ALPHABET.charAt(RANDOM.nextInt(ALPHABET.length())));
    }
    return b.toString();
  }

  /**
   * Sets {@code metadata.name} from {@code metadata.generateName} to a name not yet stored in the
   * request's collection; returns a refusal when none could be found.
   */
  static Optional<MockResponse> assign(
      ObjectNode object,
      ApiRequest target,
      Function<String, JsonNode> stored,
      ObjectMapper mapper) {
    ObjectNode metadata = (ObjectNode) object.get("metadata");
    String prefix = metadata.path("generateName").asText();
    if (prefix.length() > MAX_NAME - LENGTH) {
      prefix = prefix.substring(0, MAX_NAME - LENGTH);
    }
    for (int i = 0; i < ATTEMPTS; i++) {
      String name = prefix + suffix();
      if (stored.apply(target.collectionPath() + "/" + name) == null) {
        metadata.put("name", name);
        return Optional.empty();
      }
    }
    return Optional.of(
        Statuses.response(
            mapper,
            409,
            "AlreadyExists",
            "the server was not able to generate a unique name for the object from \""
                + prefix
                + "\""));
  }
}
