package io.leasehold.architecture;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.assertj.core.api.Assertions.assertThat;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The packages depend on each other in one direction only: {@code cli -> operator and backend ->
 * queue -> lock -> state -> api, kube, ops}. A lower layer importing a higher one is how rules end
 * up written in several places; these rules fail the build instead. Above them all, {@code local}
 * (the local jar's embedded API start-up and demo) is the only user of the embedded API, and no
 * code refers to it: the command line finds it by name, so the server jar can leave both out.
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
        .layer("local")
        .definedBy("io.leasehold.local..")
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
        .whereLayer("local")
        .mayNotBeAccessedByAnyLayer()
        .whereLayer("cli")
        .mayOnlyBeAccessedByLayers("local")
        .whereLayer("operator")
        .mayOnlyBeAccessedByLayers("cli", "local")
        .whereLayer("backend")
        .mayOnlyBeAccessedByLayers("cli", "local")
        .whereLayer("embedded")
        .mayOnlyBeAccessedByLayers("local")
        .whereLayer("queue")
        .mayOnlyBeAccessedByLayers("operator", "cli", "local")
        .whereLayer("lock")
        .mayOnlyBeAccessedByLayers("queue", "operator", "backend", "cli", "local")
        .whereLayer("state")
        .mayOnlyBeAccessedByLayers("lock", "queue", "operator", "backend", "cli", "local")
        .whereLayer("tls")
        .mayOnlyBeAccessedByLayers("backend", "cli", "local")
        .check(classes);
  }

  @Test
  @DisplayName(
      "Only io.leasehold.local uses the embedded API, and no code refers to io.leasehold.local:"
          + " the server jar leaves both out")
  void onlyTheLocalPackageUsesTheEmbeddedApi() {
    assertThat(classes.containPackage("io.leasehold.embedded"))
        .as("the embedded API's classes are imported")
        .isTrue();
    assertThat(classes.containPackage("io.leasehold.local"))
        .as("the local package's classes are imported")
        .isTrue();
    noClasses()
        .that()
        .resideOutsideOfPackages("io.leasehold.local..", "io.leasehold.embedded..")
        .should()
        .dependOnClassesThat()
        .resideInAPackage("io.leasehold.embedded..")
        .because(
            "the server jar, which the container image runs, has no embedded API; the local jar"
                + " starts it from io.leasehold.local only")
        .check(classes);
    noClasses()
        .that()
        .resideOutsideOfPackage("io.leasehold.local..")
        .should()
        .dependOnClassesThat()
        .resideInAPackage("io.leasehold.local..")
        .because(
            "the command line finds io.leasehold.local by name (LocalBuild.find), so that the"
                + " server jar, which leaves it out, runs everything else")
        .check(classes);
  }

  @Test
  @DisplayName(
      "Only the lock package writes or deletes Leases: the lock's rules are carried out in one"
          + " place, with conditional writes")
  void onlyTheLockPackageTouchesLeases() {
    noClasses()
        .that()
        .resideOutsideOfPackage("io.leasehold.lock..")
        // Reads only: which state a Lease name belongs to, and who holds the operator's own
        // leader-election Lease before finalizers are removed by hand.
        .and()
        .doNotHaveFullyQualifiedName("io.leasehold.state.StateOwnership$1")
        .and()
        .doNotHaveFullyQualifiedName("io.leasehold.cli.RemoveFinalizersCommand")
        // Not a lock: the replicas' own leader-election Lease, released at a graceful stop.
        .and()
        .doNotHaveFullyQualifiedName("io.leasehold.operator.Leadership")
        .should()
        .callMethodWhere(
            com.tngtech.archunit.base.DescribedPredicate.describe(
                "a Kubernetes client's leases()",
                call ->
                    call.getName().equals("leases")
                        && call.getTargetOwner()
                            .isAssignableTo(io.fabric8.kubernetes.client.KubernetesClient.class)))
        .because(
            "a lock Lease changed outside io.leasehold.lock would bypass the lock's decision core"
                + " and its conditional writes")
        .check(classes);
  }
}
