package io.leasehold.embedded;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class CrdDriftTest {

  private static final String REFRESH =
      "mvn -B -Prefresh-crds -DskipTests process-classes -pl operator";

  @Test
  @DisplayName("The CRD committed under crds/ is exactly the one generated from the Java model")
  void committedCrdMatchesGenerated() throws Exception {
    Path generated = Path.of(System.getProperty("leasehold.generatedCrd"));
    Path committed =
        Path.of(System.getProperty("leasehold.projectRoot"), "crds")
            .resolve(generated.getFileName());
    assertThat(generated).as("generated CRD (run the build through process-classes)").exists();
    assertThat(committed).as("%s is missing; create it with: %s", committed, REFRESH).exists();
    assertThat(Files.readString(committed, StandardCharsets.UTF_8))
        .as(
            "%s differs from the CRD generated from the Java model; refresh it with: %s",
            committed, REFRESH)
        .isEqualTo(Files.readString(generated, StandardCharsets.UTF_8));
  }
}
