package io.leasehold.cli;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** Uninstalling: the finalizers come off, and nothing of the state goes with them. */
class RemoveFinalizersCommandTest {

  private record Outcome(int exitCode, String out, String err) {}

  private static Outcome execute(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    CommandLine cli = Main.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    int code = cli.execute(args);
    return new Outcome(code, out.toString(), err.toString());
  }

  private static void create(KubernetesClient client, String ns, String name, DeletionPolicy p) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(ns);
    s.getSpec().setDeletionPolicy(p);
    client.resource(s).create();
  }

  private static TerraformState get(KubernetesClient client, String ns, String name) {
    return client.resources(TerraformState.class).inNamespace(ns).withName(name).get();
  }

  @Test
  @DisplayName(
      "With the operator stopped, remove-finalizers takes leasehold's finalizer off every"
          + " TerraformState in every namespace; deleting them then completes at once and leaves"
          + " the state Secrets and Lease, even with deletionPolicy Delete")
  void removesFinalizersAndKeepsState(@TempDir Path dir) throws Exception {
    try (OperatorHarness harness = OperatorHarness.start()) {
      KubernetesClient client = harness.client();
      client
          .namespaces()
          .resource(
              new NamespaceBuilder().withNewMetadata().withName("team-b").endMetadata().build())
          .create();
      create(client, NAMESPACE, "kept", DeletionPolicy.Retain);
      create(client, "team-b", "doomed", DeletionPolicy.Delete);
      TerraformStates.secrets(
              new StateNames("team-b", "doomed", "default"), TerraformStates.stateJson(3, "lin", 1))
          .forEach(secret -> client.resource(secret).create());
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  get(client, NAMESPACE, "kept")
                          .getMetadata()
                          .getFinalizers()
                          .contains(RemoveFinalizersCommand.FINALIZER)
                      && get(client, "team-b", "doomed")
                          .getMetadata()
                          .getFinalizers()
                          .contains(RemoveFinalizersCommand.FINALIZER)
                      && client
                              .leases()
                              .inNamespace("team-b")
                              .withName("lock-tfstate-default-doomed")
                              .get()
                          != null);
      harness.stopOperator();
      Path kubeconfig = dir.resolve("kubeconfig");
      harness.api().writeKubeconfig(kubeconfig);

      Outcome dry =
          execute("remove-finalizers", "--kubeconfig", kubeconfig.toString(), "--dry-run");
      assertThat(dry.exitCode()).isZero();
      assertThat(dry.out()).contains("would remove the finalizer from team-b/doomed");
      assertThat(get(client, "team-b", "doomed").getMetadata().getFinalizers())
          .contains(RemoveFinalizersCommand.FINALIZER);

      Outcome o =
          execute(
              "remove-finalizers", "--kubeconfig", kubeconfig.toString(), "--verify-after", "1s");
      assertThat(o.exitCode()).as(o.err()).isZero();
      assertThat(o.out())
          .contains("removed the finalizer from default/kept")
          .contains("removed the finalizer from team-b/doomed")
          .contains("changed 2 TerraformState(s)");
      for (String[] s :
          List.of(new String[] {NAMESPACE, "kept"}, new String[] {"team-b", "doomed"})) {
        assertThat(get(client, s[0], s[1]).getMetadata().getFinalizers())
            .doesNotContain(RemoveFinalizersCommand.FINALIZER);
        client.resources(TerraformState.class).inNamespace(s[0]).withName(s[1]).delete();
      }
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  get(client, "team-b", "doomed") == null
                      && get(client, NAMESPACE, "kept") == null);
      assertThat(client.secrets().inNamespace("team-b").withName("tfstate-default-doomed").get())
          .as("the state outlives its TerraformState")
          .isNotNull();
      assertThat(
              client.leases().inNamespace("team-b").withName("lock-tfstate-default-doomed").get())
          .isNotNull();

      Outcome again = execute("remove-finalizers", "--kubeconfig", kubeconfig.toString());
      assertThat(again.exitCode()).isZero();
      assertThat(again.out()).contains("changed 0 TerraformState(s)");
    }
  }

  @Test
  @DisplayName(
      "While the operator runs, remove-finalizers refuses when its leader Lease is held, and"
          + " otherwise finds the finalizer put back and fails saying leasehold still runs")
  void refusesWhileTheOperatorRuns(@TempDir Path dir) throws Exception {
    try (OperatorHarness harness = OperatorHarness.apiOnly();
        LeaseholdOperator operator =
            LeaseholdOperator.start(
                harness.client(),
                new LeaseholdOperator.Options(Set.of(), Optional.of(NAMESPACE), "replica-1")
                    .withLeaderLease("release-leader"))) {
      KubernetesClient client = harness.client();
      create(client, NAMESPACE, "busy", DeletionPolicy.Retain);
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  get(client, NAMESPACE, "busy")
                      .getMetadata()
                      .getFinalizers()
                      .contains(RemoveFinalizersCommand.FINALIZER));
      Path kubeconfig = dir.resolve("kubeconfig");
      harness.api().writeKubeconfig(kubeconfig);

      Outcome refused =
          execute(
              "remove-finalizers",
              "--kubeconfig",
              kubeconfig.toString(),
              "--operator-lease",
              NAMESPACE + "/release-leader");
      assertThat(refused.exitCode()).isEqualTo(1);
      assertThat(refused.err()).contains("leasehold is still running").contains("replica-1");
      assertThat(get(client, NAMESPACE, "busy").getMetadata().getFinalizers())
          .contains(RemoveFinalizersCommand.FINALIZER);

      Outcome putBack =
          execute(
              "remove-finalizers", "--kubeconfig", kubeconfig.toString(), "--verify-after", "2s");
      assertThat(putBack.exitCode()).isEqualTo(1);
      assertThat(putBack.err()).contains("the finalizer is back on [default/busy]");
    }
  }

  @Test
  @DisplayName(
      "With --stop-deployment (the chart's uninstall hook), remove-finalizers scales the"
          + " operator's Deployment to 0, waits until the leader Lease is no longer renewed, and"
          + " only then takes the finalizers off; an operator that does not stop in time keeps"
          + " them, and the command fails saying so")
  void stopsTheOperatorFirst(@TempDir Path dir) throws Exception {
    try (OperatorHarness harness = OperatorHarness.apiOnly()) {
      KubernetesClient client = harness.client();
      client
          .apps()
          .deployments()
          .resource(
              new io.fabric8.kubernetes.api.model.apps.DeploymentBuilder()
                  .withNewMetadata()
                  .withName("leasehold")
                  .withNamespace(NAMESPACE)
                  .endMetadata()
                  .withNewSpec()
                  .withReplicas(2)
                  .withNewSelector()
                  .addToMatchLabels("app", "leasehold")
                  .endSelector()
                  .withNewTemplate()
                  .withNewMetadata()
                  .addToLabels("app", "leasehold")
                  .endMetadata()
                  .withNewSpec()
                  .addNewContainer()
                  .withName("operator")
                  .withImage("leasehold/leasehold:test")
                  .endContainer()
                  .endSpec()
                  .endTemplate()
                  .endSpec()
                  .build())
          .create();
      Path kubeconfig = dir.resolve("kubeconfig");
      harness.api().writeKubeconfig(kubeconfig);
      String[] args = {
        "remove-finalizers",
        "--kubeconfig",
        kubeconfig.toString(),
        "--stop-deployment",
        NAMESPACE + "/leasehold",
        "--operator-lease",
        NAMESPACE + "/release-leader",
        "--verify-after",
        "1s"
      };
      LeaseholdOperator operator =
          LeaseholdOperator.start(
              client,
              new LeaseholdOperator.Options(Set.of(), Optional.of(NAMESPACE), "replica-1")
                  .withLeaderLease("release-leader"));
      try {
        create(client, NAMESPACE, "kept", DeletionPolicy.Delete);
        await()
            .atMost(Duration.ofSeconds(30))
            .until(
                () ->
                    get(client, NAMESPACE, "kept")
                        .getMetadata()
                        .getFinalizers()
                        .contains(RemoveFinalizersCommand.FINALIZER));

        // The Deployment is scaled, but the operator goes on (nothing stops its pods here).
        String[] impatient = java.util.Arrays.copyOf(args, args.length + 2);
        impatient[args.length] = "--stop-timeout";
        impatient[args.length + 1] = "2s";
        Outcome timedOut = execute(impatient);
        assertThat(timedOut.exitCode()).isEqualTo(1);
        assertThat(timedOut.out()).contains("scaled deployment default/leasehold to 0 replicas");
        assertThat(timedOut.err())
            .contains("leasehold has not stopped within 2 s")
            .contains("replica-1")
            .contains("no finalizer was removed");
        assertThat(get(client, NAMESPACE, "kept").getMetadata().getFinalizers())
            .contains(RemoveFinalizersCommand.FINALIZER);

        // This time the operator stops while the command waits, as the Deployment's pods would.
        java.util.concurrent.CompletableFuture<Outcome> run =
            java.util.concurrent.CompletableFuture.supplyAsync(() -> execute(args));
        await()
            .atMost(Duration.ofSeconds(20))
            .until(
                () ->
                    client
                            .apps()
                            .deployments()
                            .inNamespace(NAMESPACE)
                            .withName("leasehold")
                            .get()
                            .getSpec()
                            .getReplicas()
                        == 0);
        assertThat(run).isNotDone();
        operator.close();
        Outcome done = run.get(60, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(done.exitCode()).as(done.err()).isZero();
        assertThat(done.out())
            .containsSubsequence(
                "scaled deployment default/leasehold to 0 replicas",
                "the operator has stopped",
                "removed the finalizer from default/kept");
        assertThat(get(client, NAMESPACE, "kept").getMetadata().getFinalizers())
            .doesNotContain(RemoveFinalizersCommand.FINALIZER);
      } finally {
        operator.close();
      }
    }
  }
}
