package io.leasehold.embedded.corpus;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The corpus of requests the embedded API is held to the real one by ({@code corpus/cases.yaml}):
 * fixtures (named lists of objects), views (which fields of an object of a kind are compared) and
 * cases. Each case runs in a namespace of its own: its setup objects are created, its steps are
 * sent in order, then its {@code after} paths are read back.
 */
public record Corpus(
    Map<String, List<JsonNode>> fixtures, Map<String, List<String>> views, List<Case> cases) {

  public static final String RESOURCE = "/corpus/cases.yaml";
  static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  /** One case: an id, what it shows, its setup, the requests it sends, what is read after. */
  public record Case(
      String id,
      String category,
      String description,
      List<JsonNode> setup,
      List<JsonNode> steps,
      List<String> after) {}

  public static Corpus load() {
    try (InputStream in = Corpus.class.getResourceAsStream(RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(RESOURCE + " is not on the test classpath");
      }
      return parse(YAML.readTree(in));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static Corpus parse(JsonNode root) {
    Map<String, List<JsonNode>> fixtures = new LinkedHashMap<>();
    root.path("fixtures")
        .fields()
        .forEachRemaining(e -> fixtures.put(e.getKey(), list(e.getValue())));
    Map<String, List<String>> views = new LinkedHashMap<>();
    root.path("views")
        .fields()
        .forEachRemaining(
            e -> {
              List<String> paths = new ArrayList<>();
              e.getValue().forEach(p -> paths.add(p.asText()));
              views.put(e.getKey(), paths);
            });
    List<Case> cases = new ArrayList<>();
    Set<String> ids = new HashSet<>();
    for (JsonNode c : root.path("cases")) {
      String id = c.path("id").asText();
      if (id.isEmpty() || !ids.add(id)) {
        throw new IllegalArgumentException("corpus: case id missing or repeated: '" + id + "'");
      }
      List<JsonNode> setup = new ArrayList<>();
      for (JsonNode s : c.path("setup")) {
        if (s.isTextual()) {
          List<JsonNode> fixture = fixtures.get(s.asText());
          if (fixture == null) {
            throw new IllegalArgumentException("corpus: " + id + ": no fixture " + s.asText());
          }
          setup.addAll(fixture);
        } else {
          setup.add(s);
        }
      }
      List<String> after = new ArrayList<>();
      for (JsonNode a : list(c.path("after"))) {
        after.add(a.asText());
      }
      List<JsonNode> steps = list(c.path("steps"));
      if (steps.isEmpty()) {
        throw new IllegalArgumentException("corpus: " + id + " has no steps");
      }
      cases.add(
          new Case(
              id,
              c.path("category").asText("other"),
              c.path("description").asText(""),
              setup,
              steps,
              after));
    }
    return new Corpus(fixtures, views, cases);
  }

  private static List<JsonNode> list(JsonNode node) {
    List<JsonNode> out = new ArrayList<>();
    if (node instanceof ArrayNode array) {
      array.forEach(out::add);
    } else if (node != null && !node.isMissingNode() && !node.isNull()) {
      out.add(node);
    }
    return out;
  }
}
