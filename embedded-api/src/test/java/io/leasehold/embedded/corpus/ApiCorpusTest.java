package io.leasehold.embedded.corpus;

import com.fasterxml.jackson.databind.JsonNode;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.embedded.corpus.Golden.Divergence;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The embedded API is held to a real API server: every case of the corpus runs against it, from the
 * same starting objects, and its outcome must equal the real server's recorded in the golden file,
 * unless docs/embedded-api.md lists the case among the divergences (then it must still differ: a
 * listed divergence that was fixed is taken off the list).
 */
class ApiCorpusTest {

  @Test
  @DisplayName("the embedded API answers the corpus as the real API server did")
  void embeddedApiMatchesTheRealOne() throws Exception {
    Corpus corpus = Corpus.load();
    Map<String, JsonNode> golden = Golden.load();
    List<Divergence> listed = Golden.divergences(projectRoot().resolve(Golden.DIVERGENCES_FILE));
    Set<String> accepted = new HashSet<>();
    listed.forEach(d -> accepted.addAll(d.cases()));
    Map<String, JsonNode> outcomes;
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0)) {
      api.installAdmissionPolicies();
      Path kubeconfig = Files.createTempFile("corpus-kubeconfig", ".yaml");
      api.writeKubeconfig(kubeconfig);
      CorpusRunner runner =
          new CorpusRunner(corpus, CorpusRunner.Target.fromKubeconfig(kubeconfig));
      String only = System.getProperty("corpus.only", "");
      if (only.isBlank()) {
        outcomes = runner.runAll();
      } else {
        outcomes = new java.util.LinkedHashMap<>();
        int i = 0;
        for (Corpus.Case c : corpus.cases()) {
          if (c.id().matches(only)) {
            outcomes.put(c.id(), runner.run(c, i));
          }
          i++;
        }
      }
    }
    List<String> problems = new ArrayList<>();
    Set<String> ids = new HashSet<>();
    for (Map.Entry<String, JsonNode> e : outcomes.entrySet()) {
      String id = e.getKey();
      ids.add(id);
      JsonNode real = golden.get(id);
      if (real == null) {
        problems.add(
            id
                + ": no answer of the real API server recorded; record with "
                + Golden.RECORD_COMMAND);
        continue;
      }
      boolean same = real.equals(e.getValue());
      if (!same && !accepted.contains(id)) {
        problems.add(
            id
                + ": the embedded API differs from the real one\n    "
                + String.join("\n    ", CorpusRunner.differences(real, e.getValue(), ""))
                + "\n  real:\n"
                + indent(Golden.yaml(real))
                + "  embedded:\n"
                + indent(Golden.yaml(e.getValue())));
      } else if (same && accepted.contains(id)) {
        problems.add(
            id
                + ": listed in "
                + Golden.DIVERGENCES_FILE
                + " as a divergence, but the embedded API now answers as"
                + " the real one: take it off the table under '"
                + Golden.DIVERGENCES_HEADING
                + "'");
      }
    }
    if (System.getProperty("corpus.only", "").isBlank()) {
      for (String id : accepted) {
        if (!ids.contains(id)) {
          problems.add(
              Golden.DIVERGENCES_FILE
                  + " lists a divergence for '"
                  + id
                  + "', which is no corpus case");
        }
      }
    }
    if (!problems.isEmpty()) {
      throw new AssertionError(
          problems.size() + " of " + outcomes.size() + " cases:\n" + String.join("\n", problems));
    }
  }

  private static String indent(String text) {
    return text.lines().map(l -> "    " + l).reduce("", (a, b) -> a + b + "\n");
  }

  static Path projectRoot() {
    Path dir = Path.of("").toAbsolutePath();
    while (dir != null && !Files.isRegularFile(dir.resolve("hack/cluster.sh"))) {
      dir = dir.getParent();
    }
    if (dir == null) {
      throw new IllegalStateException("run from inside the project: no hack/cluster.sh above");
    }
    return dir;
  }
}
