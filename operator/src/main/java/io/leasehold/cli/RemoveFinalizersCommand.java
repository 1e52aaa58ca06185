package io.leasehold.cli;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.ReconcilerUtils;
import io.leasehold.api.TerraformState;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code remove-finalizers}: before leasehold is uninstalled, takes its finalizer off every
 * TerraformState, so that deleting one (or its namespace, or the CRD) does not wait for an operator
 * that is gone. The state Secrets and Leases are left as they are, whatever the deletion policy.
 */
@Command(
    name = "remove-finalizers",
    mixinStandardHelpOptions = true,
    description = {
      "Removes leasehold's finalizer from every TerraformState (before uninstalling leasehold),"
          + " so that deleting them, their namespaces or the CRD does not hang. Stop the operator"
          + " first: a running one adds the finalizer back. State Secrets and Leases are never"
          + " touched, whatever the deletionPolicy."
    })
final class RemoveFinalizersCommand implements Callable<Integer> {

  /** The finalizer the operator puts on TerraformStates. */
  static final String FINALIZER = ReconcilerUtils.getDefaultFinalizerName(TerraformState.class);

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Option(
      names = {"-n", "--namespace"},
      paramLabel = "NS",
      split = ",",
      description = "Only these namespaces (repeatable or comma-separated; default: all).")
  List<String> namespaces = new ArrayList<>();

  @Option(
      names = "--kubeconfig",
      paramLabel = "FILE",
      description = "kubeconfig to use (default: $KUBECONFIG, ~/.kube/config or in-cluster).")
  Path kubeconfig;

  @Option(
      names = "--operator-lease",
      paramLabel = "NS/NAME",
      description =
          "The operator's leader-election Lease (the chart's: RELEASE_NAMESPACE/FULLNAME-leader):"
              + " refuse while it is held and renewed, that is while the operator runs.")
  String operatorLease;

  @Option(
      names = "--force",
      description = "Go on even though the operator's Lease says it is running.")
  boolean force;

  @Option(names = "--dry-run", description = "Only list the TerraformStates it would change.")
  boolean dryRun;

  @Option(
      names = "--stop-deployment",
      paramLabel = "NS/NAME",
      description =
          "First scale the operator's Deployment to 0 replicas and wait until its --operator-lease"
              + " is no longer renewed (the chart's uninstall hook does this: the finalizers come"
              + " off only once no operator can put them back).")
  String stopDeployment;

  @Option(
      names = "--stop-timeout",
      paramLabel = "DURATION",
      defaultValue = "120s",
      converter = DurationConverter.class,
      description =
          "With --stop-deployment: how long to wait for the operator to stop (default 120s).")
  Duration stopTimeout;

  @Option(
      names = "--verify-after",
      paramLabel = "DURATION",
      defaultValue = "3s",
      converter = DurationConverter.class,
      description =
          "Look again after this long and fail if an operator still running put the finalizer"
              + " back (default 3s; 0s skips it).")
  Duration verifyAfter;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    try (KubernetesClient client = client()) {
      if (stopDeployment != null) {
        if (operatorLease == null) {
          throw new CommandLine.ParameterException(
              spec.commandLine(),
              "--stop-deployment needs --operator-lease, to tell when the operator has stopped");
        }
        if (!dryRun && !stop(client, out)) {
          return 1;
        }
      }
      if (operatorLease != null && !force) {
        String running = runningOperator(client);
        if (running != null) {
          spec.commandLine()
              .getErr()
              .println(
                  "error: leasehold is still running ("
                      + running
                      + "): it would add the finalizer back. Stop it first (kubectl scale"
                      + " deployment --replicas=0, or helm uninstall), or pass --force");
          return 1;
        }
      }
      int changed = 0;
      int without = 0;
      for (TerraformState s : list(client)) {
        String id = s.getMetadata().getNamespace() + "/" + s.getMetadata().getName();
        if (!s.getMetadata().getFinalizers().contains(FINALIZER)) {
          without++;
          continue;
        }
        if (dryRun) {
          out.println("would remove the finalizer from " + id);
        } else {
          remove(client, s);
          out.println("removed the finalizer from " + id);
        }
        changed++;
      }
      out.println(
          (dryRun ? "would change " : "changed ")
              + changed
              + " TerraformState(s); "
              + without
              + " had no leasehold finalizer");
      out.flush();
      if (dryRun || changed == 0 || verifyAfter.isZero()) {
        return 0;
      }
      Thread.sleep(verifyAfter.toMillis());
      List<String> back = new ArrayList<>();
      for (TerraformState s : list(client)) {
        if (s.getMetadata().getFinalizers().contains(FINALIZER)) {
          back.add(s.getMetadata().getNamespace() + "/" + s.getMetadata().getName());
        }
      }
      if (!back.isEmpty()) {
        spec.commandLine()
            .getErr()
            .println(
                "error: the finalizer is back on "
                    + back
                    + ": leasehold is still running. Stop it, then run this again");
        return 1;
      }
      return 0;
    }
  }

  private KubernetesClient client() throws java.io.IOException {
    if (kubeconfig == null) {
      return new KubernetesClientBuilder().build();
    }
    if (!Files.isReadable(kubeconfig)) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "cannot read --kubeconfig " + kubeconfig);
    }
    return new KubernetesClientBuilder()
        .withConfig(Config.fromKubeconfig(Files.readString(kubeconfig)))
        .build();
  }

  private List<TerraformState> list(KubernetesClient client) {
    if (namespaces.isEmpty()) {
      return client.resources(TerraformState.class).inAnyNamespace().list().getItems();
    }
    List<TerraformState> all = new ArrayList<>();
    for (String ns : namespaces) {
      all.addAll(client.resources(TerraformState.class).inNamespace(ns).list().getItems());
    }
    return all;
  }

  /** Takes the finalizer off with an update conditional on the version read; retries on 409. */
  private static void remove(KubernetesClient client, TerraformState state) {
    TerraformState current = state;
    for (int attempt = 0; ; attempt++) {
      List<String> rest = new ArrayList<>(current.getMetadata().getFinalizers());
      rest.remove(FINALIZER);
      current.getMetadata().setFinalizers(rest);
      try {
        client.resource(current).update();
        return;
      } catch (KubernetesClientException e) {
        if (e.getCode() == 404) {
          return;
        }
        if (e.getCode() != 409 || attempt >= 5) {
          throw e;
        }
        current =
            client
                .resources(TerraformState.class)
                .inNamespace(state.getMetadata().getNamespace())
                .withName(state.getMetadata().getName())
                .get();
        if (current == null || !current.getMetadata().getFinalizers().contains(FINALIZER)) {
          return;
        }
      }
    }
  }

  /**
   * Scales the Deployment to 0 replicas and waits until the operator's Lease is no longer renewed;
   * false, having said why, when it is still renewed after {@link #stopTimeout}.
   */
  private boolean stop(KubernetesClient client, PrintWriter out) throws InterruptedException {
    String[] deployment = namespaceAndName("--stop-deployment", stopDeployment);
    client
        .apps()
        .deployments()
        .inNamespace(deployment[0])
        .withName(deployment[1])
        .patch(
            io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                io.fabric8.kubernetes.client.dsl.base.PatchType.JSON_MERGE),
            "{\"spec\":{\"replicas\":0}}");
    out.println("scaled deployment " + stopDeployment + " to 0 replicas");
    out.flush();
    Instant deadline = Instant.now().plus(stopTimeout);
    String running = runningOperator(client);
    while (running != null) {
      if (Instant.now().isAfter(deadline)) {
        spec.commandLine()
            .getErr()
            .println(
                "error: leasehold has not stopped within "
                    + stopTimeout.toSeconds()
                    + " s ("
                    + running
                    + "); no finalizer was removed");
        return false;
      }
      Thread.sleep(500);
      running = runningOperator(client);
    }
    out.println("the operator has stopped (Lease " + operatorLease + " no longer renewed)");
    out.flush();
    return true;
  }

  private String[] namespaceAndName(String option, String value) {
    int slash = value.indexOf('/');
    if (slash <= 0 || slash == value.length() - 1) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), option + " is NAMESPACE/NAME, not '" + value + "'");
    }
    return new String[] {value.substring(0, slash), value.substring(slash + 1)};
  }

  /** Who holds the operator's Lease and renewed it within its duration, or null. */
  private String runningOperator(KubernetesClient client) {
    int slash = operatorLease.indexOf('/');
    if (slash <= 0 || slash == operatorLease.length() - 1) {
      throw new CommandLine.ParameterException(
          spec.commandLine(), "--operator-lease is NAMESPACE/NAME, not '" + operatorLease + "'");
    }
    Lease lease =
        client
            .leases()
            .inNamespace(operatorLease.substring(0, slash))
            .withName(operatorLease.substring(slash + 1))
            .get();
    if (lease == null || lease.getSpec() == null || lease.getSpec().getHolderIdentity() == null) {
      return null;
    }
    ZonedDateTime renewed = lease.getSpec().getRenewTime();
    Integer duration = lease.getSpec().getLeaseDurationSeconds();
    if (renewed == null
        || duration == null
        || renewed.toInstant().plusSeconds(duration).isBefore(Instant.now())) {
      return null;
    }
    return "Lease "
        + operatorLease
        + " held by "
        + lease.getSpec().getHolderIdentity()
        + ", renewed "
        + Duration.between(renewed.toInstant(), Instant.now()).toSeconds()
        + " s ago";
  }
}
