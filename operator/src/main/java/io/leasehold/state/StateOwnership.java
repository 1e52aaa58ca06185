package io.leasehold.state;

import io.leasehold.api.TerraformState;
import java.time.Instant;
import java.util.Collection;
import java.util.Comparator;
import java.util.Map;
import java.util.Optional;

/**
 * One state, one owner. Terraform names a state's objects {@code tfstate-WS-NAME}, which is
 * ambiguous: name {@code a-b} in workspace {@code c} and name {@code b} in workspace {@code c-a}
 * both give Secret {@code tfstate-c-a-b} and Lease {@code lock-tfstate-c-a-b}. So before a
 * TerraformState's objects are read, written, locked or deleted, this checks that no other
 * TerraformState of the namespace maps to the same names (the one created first keeps them), and
 * that the state Secret and Lease already there carry this TerraformState's workspace and suffix
 * labels (they were not written for another workspace and name by stock Terraform). The
 * TerraformState refused learns which one owns the names; nothing of it is touched through the
 * refused one.
 *
 * <p>"Created first" is decided the same way on every replica: creation time, then UID.
 */
public final class StateOwnership {

  /** What the namespace holds, as far as ownership needs it (this replica's caches). */
  public interface Stored {
    /** The TerraformStates of {@code namespace}. */
    Collection<TerraformState> states(String namespace);

    /** The labels of Secret {@code name}, or empty when there is no such state Secret. */
    Optional<Map<String, String>> secretLabels(String namespace, String name);

    /** The labels of Lease {@code name}, or empty when there is no such lock Lease. */
    Optional<Map<String, String>> leaseLabels(String namespace, String name);
  }

  /**
   * Why a TerraformState may not use its names.
   *
   * @param message what owns them and what to do, for the condition, the Event and the backend
   * @param owner the TerraformState that owns the names, when one does
   */
  public record Collision(String message, Optional<String> owner) {}

  /** What the API holds, read on each call: for a backend without the operator's caches. */
  public static Stored fromApi(io.fabric8.kubernetes.client.KubernetesClient client) {
    return new Stored() {
      @Override
      public Collection<TerraformState> states(String namespace) {
        return client.resources(TerraformState.class).inNamespace(namespace).list().getItems();
      }

      @Override
      public Optional<Map<String, String>> secretLabels(String namespace, String name) {
        return io.leasehold.kube.SecretMetadata.list(
                client, namespace, Map.of(StateNames.LABEL_TFSTATE, "true"))
            .stream()
            .filter(s -> name.equals(s.getMetadata().getName()))
            .findFirst()
            .map(s -> s.getMetadata().getLabels());
      }

      @Override
      public Optional<Map<String, String>> leaseLabels(String namespace, String name) {
        return Optional.ofNullable(client.leases().inNamespace(namespace).withName(name).get())
            .map(l -> l.getMetadata().getLabels() == null ? Map.of() : l.getMetadata().getLabels());
      }
    };
  }

  private static final Comparator<TerraformState> CREATED =
      Comparator.comparing(StateOwnership::createdAt)
          .thenComparing(s -> String.valueOf(s.getMetadata().getUid()));

  private StateOwnership() {}

  /**
   * Whether {@code state} is refused its names because another owns them; empty when they are its
   * own (or free). A TerraformState without spec is never checked here (it has no names).
   */
  public static Optional<Collision> check(TerraformState state, Stored stored) {
    if (state.getSpec() == null) {
      return Optional.empty();
    }
    StateNames names = namesOf(state);
    for (TerraformState other : stored.states(names.namespace())) {
      if (other.getSpec() == null
          || sameObject(other, state)
          || !namesOf(other).secretName().equals(names.secretName())
          || CREATED.compare(other, state) > 0
          || labelledForAnother(stored, namesOf(other))) {
        // An older TerraformState whose Secret or Lease is labelled for another workspace and
        // name is refused itself: it owns nothing, so it cannot keep their owner out.
        continue;
      }
      return Optional.of(
          new Collision(
              "TerraformState "
                  + other.getMetadata().getName()
                  + " (workspace "
                  + other.getSpec().getWorkspace()
                  + "), created first, maps to the same Secret "
                  + names.secretName()
                  + " and Lease "
                  + names.leaseName()
                  + " as this one (workspace "
                  + names.workspace()
                  + ", name "
                  + names.name()
                  + "): Terraform's names tfstate-<workspace>-<name> cannot tell them apart, so"
                  + " this one is refused and nothing of "
                  + other.getMetadata().getName()
                  + " is read, written, locked or deleted through it. Rename this TerraformState"
                  + " or choose another workspace",
              Optional.of(other.getMetadata().getName())));
    }
    Optional<Collision> secret =
        foreign(
            stored,
            names,
            "Secret " + names.secretName(),
            stored::secretLabels,
            names.secretName());
    if (secret.isPresent()) {
      return secret;
    }
    return foreign(
        stored, names, "Lease " + names.leaseName(), stored::leaseLabels, names.leaseName());
  }

  /** Whether the state Secret or the Lease of {@code names} is labelled for other names. */
  private static boolean labelledForAnother(Stored stored, StateNames names) {
    return foreign(
                stored,
                names,
                "Secret " + names.secretName(),
                stored::secretLabels,
                names.secretName())
            .isPresent()
        || foreign(
                stored, names, "Lease " + names.leaseName(), stored::leaseLabels, names.leaseName())
            .isPresent();
  }

  /** The names a TerraformState with a spec maps to. */
  public static StateNames namesOf(TerraformState state) {
    return new StateNames(
        state.getMetadata().getNamespace(),
        state.getMetadata().getName(),
        state.getSpec().getWorkspace());
  }

  private interface Labels {
    Optional<Map<String, String>> of(String namespace, String name);
  }

  /** The object there carries another workspace or suffix than this TerraformState's. */
  private static Optional<Collision> foreign(
      Stored stored, StateNames names, String what, Labels labels, String objectName) {
    Optional<Map<String, String>> found = labels.of(names.namespace(), objectName);
    if (found.isEmpty()) {
      return Optional.empty();
    }
    String suffix = found.get().get(StateNames.LABEL_SUFFIX);
    String workspace = found.get().get(StateNames.LABEL_WORKSPACE);
    if (suffix == null || workspace == null) {
      // Not labelled for a state: nothing says whose it is.
      return Optional.empty();
    }
    if (suffix.equals(names.name()) && workspace.equals(names.workspace())) {
      return Optional.empty();
    }
    Optional<String> owner =
        stored.states(names.namespace()).stream()
            .filter(
                s ->
                    s.getSpec() != null
                        && suffix.equals(s.getMetadata().getName())
                        && workspace.equals(s.getSpec().getWorkspace()))
            .map(s -> s.getMetadata().getName())
            .findFirst();
    return Optional.of(
        new Collision(
            what
                + " holds the state of workspace "
                + workspace
                + " and secret_suffix "
                + suffix
                + " ("
                + owner.map(o -> "TerraformState " + o).orElse("written by stock Terraform")
                + "), not of this TerraformState (workspace "
                + names.workspace()
                + ", name "
                + names.name()
                + "): Terraform's names tfstate-<workspace>-<name> cannot tell them apart, so"
                + " this one is refused and nothing of that state is read, written, locked or"
                + " deleted through it. Rename this TerraformState or choose another workspace",
            owner));
  }

  private static boolean sameObject(TerraformState a, TerraformState b) {
    String ua = a.getMetadata().getUid();
    String ub = b.getMetadata().getUid();
    if (ua != null && ub != null) {
      return ua.equals(ub);
    }
    return a.getMetadata().getName().equals(b.getMetadata().getName());
  }

  private static Instant createdAt(TerraformState s) {
    String created = s.getMetadata().getCreationTimestamp();
    try {
      return created == null ? Instant.MAX : Instant.parse(created);
    } catch (RuntimeException e) {
      return Instant.MAX;
    }
  }
}
