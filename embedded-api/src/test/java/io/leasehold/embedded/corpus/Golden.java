package io.leasehold.embedded.corpus;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The real API server's answers to the corpus ({@code corpus/golden.yaml}, recorded by {@code
 * ApiCorpusClusterIT}), and the divergences of the embedded API that are accepted: the table in
 * {@value #DIVERGENCES_FILE} under {@value #DIVERGENCES_HEADING}, each row naming the case ids it
 * covers.
 */
public final class Golden {

  public static final String RESOURCE = "/corpus/golden.yaml";
  public static final String SOURCE = "embedded-api/src/test/resources/corpus/golden.yaml";

  /** The document, relative to the project root, that lists the accepted divergences. */
  public static final String DIVERGENCES_FILE = "docs/embedded-api.md";

  public static final String DIVERGENCES_HEADING = "## Where the embedded API differs";

  /** How to record the golden file again from a real control plane. */
  public static final String RECORD_COMMAND =
      "hack/cluster.sh up /tmp/corpus-cluster && mvn -B -Preal-cluster"
          + " -Dleasehold.cluster.dir=/tmp/corpus-cluster -Dcorpus.record=true -pl embedded-api"
          + " verify && hack/cluster.sh down /tmp/corpus-cluster";

  private static final YAMLMapper YAML =
      YAMLMapper.builder()
          .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES)
          .enable(YAMLGenerator.Feature.ALWAYS_QUOTE_NUMBERS_AS_STRINGS)
          .disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
          .build();

  private Golden() {}

  /** The recorded outcomes by case id (empty when nothing is recorded). */
  public static Map<String, JsonNode> load() {
    try (var in = Golden.class.getResourceAsStream(RESOURCE)) {
      Map<String, JsonNode> out = new LinkedHashMap<>();
      if (in == null) {
        return out;
      }
      JsonNode root = YAML.readTree(in);
      root.path("cases").fields().forEachRemaining(e -> out.put(e.getKey(), e.getValue()));
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Writes the outcomes of a real API server as the golden file. */
  public static void write(Path file, String serverVersion, Map<String, JsonNode> outcomes) {
    ObjectNode root = JsonNodeFactory.instance.objectNode();
    root.put("server", serverVersion);
    ObjectNode cases = root.putObject("cases");
    outcomes.forEach(cases::set);
    try {
      String header =
          "# The real API server's answers to corpus/cases.yaml, recorded by ApiCorpusClusterIT;\n"
              + "# ApiCorpusTest holds the embedded API to them. Do not edit: record again with\n# "
              + RECORD_COMMAND
              + "\n";
      Files.writeString(file, header + YAML.writeValueAsString(root), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static String yaml(JsonNode node) {
    try {
      return YAML.writeValueAsString(node);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A listed divergence: the cases it covers, what differs, why it is left. */
  public record Divergence(Set<String> cases, String what, String why) {}

  private static final Pattern CASE_ID = Pattern.compile("`([a-z0-9][a-z0-9-]*)`");

  /** The table of divergences in {@code doc}, one row each. */
  public static List<Divergence> divergences(Path doc) {
    List<String> lines;
    try {
      lines = Files.readAllLines(doc, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    int start = lines.indexOf(DIVERGENCES_HEADING);
    if (start < 0) {
      throw new AssertionError(doc + " has no section '" + DIVERGENCES_HEADING + "'");
    }
    List<Divergence> out = new ArrayList<>();
    boolean inTable = false;
    for (int i = start + 1; i < lines.size(); i++) {
      String line = lines.get(i).strip();
      if (line.startsWith("#")) {
        break;
      }
      if (!line.startsWith("|")) {
        if (inTable) {
          break;
        }
        continue;
      }
      inTable = true;
      String[] cells = line.substring(1, line.length() - 1).split("\\|");
      if (cells.length < 3 || cells[0].contains("---") || cells[0].strip().equals("cases")) {
        continue;
      }
      Set<String> ids = new LinkedHashSet<>();
      Matcher m = CASE_ID.matcher(cells[0]);
      while (m.find()) {
        ids.add(m.group(1));
      }
      out.add(new Divergence(ids, cells[1].strip(), cells[2].strip()));
    }
    return out;
  }
}
