package io.leasehold.architecture;

import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The packages depend on each other in one direction only: {@code cli -> operator and backend ->
 * queue -> lock -> state -> api, kube, ops}. A lower layer importing a higher one is how rules end
 * up written in several places; these rules fail the build instead.
 */
class LayeringTest {

  private static JavaClasses classes;

  @BeforeAll
  static void importClasses() {
    classes =
        new ClassFileImporter()
            .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
            .importPackages("io.leasehold");
  }

  @Test
  @DisplayName("No two packages depend on each other, directly or through others")
  void noPackageCycles() {
    slices().matching("io.leasehold.(*)..").should().beFreeOfCycles().check(classes);
  }

  @Test
  @DisplayName(
      "Each layer is used only by the layers above it: cli, then operator and backend, then"
          + " queue, lock, state, and the shared foundations")
  void layersOnlyDependDownwards() {
    layeredArchitecture()
        .consideringOnlyDependenciesInLayers()
        .layer("cli")
        .definedBy("io.leasehold.cli..")
        .layer("operator")
        .definedBy("io.leasehold.operator..")
        .layer("backend")
        .definedBy("io.leasehold.backend..")
        .layer("embedded")
        .definedBy("io.leasehold.embedded..")
        .layer("queue")
        .definedBy("io.leasehold.queue..")
        .layer("lock")
        .definedBy("io.leasehold.lock..")
        .layer("state")
        .definedBy("io.leasehold.state..")
        .layer("tls")
        .definedBy("io.leasehold.tls..")
        .layer("foundation")
        .definedBy("io.leasehold.api..", "io.leasehold.kube..", "io.leasehold.ops..")
        .whereLayer("cli")
        .mayNotBeAccessedByAnyLayer()
        .whereLayer("operator")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("backend")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("embedded")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("queue")
        .mayOnlyBeAccessedByLayers("operator", "cli")
        .whereLayer("lock")
        .mayOnlyBeAccessedByLayers("queue", "operator", "backend", "cli")
        .whereLayer("state")
        .mayOnlyBeAccessedByLayers("lock", "queue", "operator", "backend", "cli")
        .whereLayer("tls")
        .mayOnlyBeAccessedByLayers("backend", "cli")
        .check(classes);
  }
}
