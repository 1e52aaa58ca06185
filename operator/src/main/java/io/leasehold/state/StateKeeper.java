package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the operator does with a state each time it looks at one: it reads the state's facts (only
 * when its Secrets changed), settles a write whose writer is gone (see {@link StateWriter}), keeps
 * every version it sees in history, whoever wrote it, and tells in Events what users must know: a
 * stock client that replaced the state with another lineage or an older serial, a plaintext state
 * where encryption is required, a state grown past one Secret.
 *
 * <p>It never changes a state Secret except to finish an interrupted write from its journal.
 */
public final class StateKeeper implements AutoCloseable {

  /** Where the keeper tells what users need to see: Events on the TerraformState. */
  public interface Notices extends JournalSettler.Notices {}

  private static final Logger LOG = LoggerFactory.getLogger(StateKeeper.class);
  private static final String SETTLER = "leasehold operator";

  /**
   * Told to Terraform before 1.10 and OpenTofu users: their kubernetes backend reads one Secret.
   */
  public static final String CHUNKED_NOTE =
      "stored in more than one Secret (over 1 MiB gzip'd): OpenTofu's kubernetes backend and"
          + " Terraform's before 1.10 read only the first Secret and cannot read this state; use"
          + " Terraform 1.10 or later, or leasehold's HTTP backend";

  /** Facts of a state as last read, with the Secret versions they were read at. */
  private record Known(String versions, Optional<StateFacts> facts, boolean writePending) {}

  private final KubernetesClient client;
  private final Map<String, Known> known = new ConcurrentHashMap<>();
  private final JournalSettler settler;

  public StateKeeper(KubernetesClient client) {
    this.client = client;
    this.settler = new JournalSettler(client, SETTLER);
  }

  /**
   * The facts of the stored state, for status, or empty when there is none yet.
   *
   * @param secrets the state's Secrets as cached (their data is not needed)
   * @param before the facts status showed until now
   * @throws StateUnreadableException when the stored state cannot be read, or is missing while
   *     history holds versions of it
   */
  public Optional<StateFacts> observe(
      TerraformState resource,
      StateNames names,
      List<Secret> secrets,
      StateFacts before,
      Notices notices)
      throws StateUnreadableException {
    String key = names.namespace() + "/" + names.name();
    String versions = versions(secrets);
    Known last = known.get(key);
    if (last != null && last.versions().equals(versions) && !last.writePending()) {
      return last.facts();
    }
    int keep = resource.getSpec().getHistory().getKeep();
    boolean pending = settleAbandoned(key, names, keep, notices);
    Optional<StateStore.Current> current;
    try {
      current =
          StoredState.ordered(names, secrets).isEmpty() && !pending
              ? Optional.empty()
              : new StateStore(client, names).read(false);
    } catch (StateUnreadableException e) {
      if (pending) {
        known.put(key, new Known(versions, Optional.empty(), true));
        throw new StateUnreadableException(
            e.objectName(),
            e.getMessage()
                + "; a write of this state is in progress or was interrupted, and is settled"
                + " automatically",
            e);
      }
      throw e;
    }
    Optional<StateFacts> facts = current.map(StateStore.Current::facts);
    if (facts.isEmpty() && before != null) {
      Optional<String> missing = StateHistory.missingState(client, names);
      if (missing.isPresent()) {
        throw new StateUnreadableException(names.secretName(), missing.get());
      }
    }
    if (current.isPresent()) {
      StateFacts f = current.get().facts();
      if (f.getChunks() != null && f.getChunks() > 1) {
        f.setCompatibility(CHUNKED_NOTE);
      }
      // While a write is under way its version is in history already (copied before the state
      // Secrets are written): look it up, so that the write is told by its own reason.
      Kept kept = pending ? lookUp(names, current.get()) : keep(names, current.get(), keep);
      if (!kept.done()) {
        // Looked at again next time, so that the version is kept then.
        versions = "";
      }
      // A state seen for the first time may be leasehold's own first write: its version was
      // then in history already, kept for another reason than being found.
      Optional<String> writtenBy =
          before == null
              ? kept.inHistoryAs().filter(r -> !WRITTEN_OUTSIDE.equals(r))
              : Optional.empty();
      tell(resource, names, before, f, notices, writtenBy);
    }
    known.put(key, new Known(versions, facts, pending));
    return facts;
  }

  /** Forgets a state (its TerraformState is gone). */
  public void forget(StateNames names) {
    known.remove(names.namespace() + "/" + names.name());
  }

  /**
   * Settles an interrupted write of the state whose writer is gone (tried again later when it is
   * not due yet); returns whether one is still pending.
   */
  private boolean settleAbandoned(String key, StateNames names, int keep, Notices notices) {
    Optional<StateWriter.Outcome> outcome =
        settler.settle(
            names,
            keep,
            new JournalSettler.Notices() {
              @Override
              public void normal(String reason, String message) {
                notices.normal(reason, message);
              }

              @Override
              public void warning(String reason, String message) {
                // Settled: look at the state afresh next time.
                known.computeIfPresent(key, (k, v) -> new Known("", v.facts(), true));
                notices.warning(reason, message);
              }
            });
    return outcome.isPresent() && outcome.get().result() == StateWriter.Result.PENDING;
  }

  /** Why a version is kept in history when the operator finds it there first. */
  static final String WRITTEN_OUTSIDE =
      "written outside leasehold; kept when the operator first saw it";

  /**
   * What {@link #keep} did: whether the version is kept now (false when that failed for now), and
   * the reason it was in history already under, if it was.
   */
  private record Kept(boolean done, Optional<String> inHistoryAs) {}

  /** What history says of {@code current}, without keeping it (a write of it is under way). */
  private Kept lookUp(StateNames names, StateStore.Current current) {
    try {
      return new Kept(
          true,
          new StateHistory(client, names)
              .find(current.facts(), current.md5())
              .map(StateHistory.Version::reason));
    } catch (RuntimeException e) {
      LOG.debug("{}/{}: history not read: {}", names.namespace(), names.name(), e.getMessage());
      return new Kept(true, Optional.empty());
    }
  }

  /** Keeps {@code current} in history if it is not there yet (written outside leasehold). */
  private Kept keep(StateNames names, StateStore.Current current, int keep) {
    if (keep <= 0) {
      return new Kept(true, Optional.empty());
    }
    StateHistory history = new StateHistory(client, names);
    try {
      Optional<StateHistory.Version> found = history.find(current.facts(), current.md5());
      if (found.isPresent()) {
        return new Kept(true, Optional.ofNullable(found.get().reason()));
      }
      history.save(current, WRITTEN_OUTSIDE);
      history.prune(keep, Set.of());
    } catch (RuntimeException e) {
      // Tried again the next time the state is looked at.
      LOG.warn(
          "{}/{}: serial {} could not be kept in history yet: {}",
          names.namespace(),
          names.name(),
          current.facts().serialText(),
          e.getMessage());
      return new Kept(false, Optional.empty());
    }
    return new Kept(true, Optional.empty());
  }

  /** Events for a state seen for the first time, changed, replaced, plaintext or chunked. */
  private void tell(
      TerraformState resource,
      StateNames names,
      StateFacts before,
      StateFacts after,
      Notices notices,
      Optional<String> writtenBy) {
    if (Objects.equals(before, after)) {
      return;
    }
    if (resource.getSpec().getEncryption().isRequired() && !after.encrypted()) {
      notices.warning(
          "StateNotEncrypted",
          "state serial "
              + after.serialText()
              + " in "
              + after.getSecretName()
              + " is plaintext, but this TerraformState requires OpenTofu client-side encryption"
              + " (spec.encryption.required); writes through the HTTP backend are refused until"
              + " it is encrypted");
    }
    if (after.getChunks() != null
        && after.getChunks() > 1
        && (before == null || before.getChunks() == null || before.getChunks() <= 1)) {
      notices.warning("StateChunked", "state serial " + after.serialText() + " is " + CHUNKED_NOTE);
    }
    if (before == null || before.getSerial() == null) {
      String what =
          "serial "
              + after.serialText()
              + ", lineage "
              + after.getLineage()
              + ", "
              + contents(after);
      if (writtenBy.isPresent()) {
        notices.normal(
            "StateCreated",
            "first state stored in "
                + after.getSecretName()
                + ", "
                + writtenBy.get()
                + ": "
                + what);
      } else {
        notices.normal("StateAdopted", "found state in " + after.getSecretName() + ": " + what);
      }
      return;
    }
    boolean otherLineage = !Objects.equals(before.getLineage(), after.getLineage());
    boolean older = StateFacts.compareSerials(after.getSerial(), before.getSerial()) < 0;
    if (otherLineage || older) {
      // The backend refuses both: this write came from a client outside leasehold.
      String replaced =
          new StateHistory(client, names)
              .list().stream()
                  .filter(
                      v ->
                          Objects.equals(v.serial(), before.getSerial())
                              && Objects.equals(v.lineage(), before.getLineage()))
                  .findFirst()
                  .map(v -> "; it is kept in history as " + v.id() + " and can be restored")
                  .orElse("");
      notices.warning(
          otherLineage ? "LineageChanged" : "SerialLowered",
          "the state was replaced outside leasehold (a stock kubernetes-backend client or kubectl)"
              + " with "
              + (otherLineage ? "another lineage" : "an older serial")
              + ": serial "
              + before.serialText()
              + " lineage "
              + before.getLineage()
              + " became serial "
              + after.serialText()
              + " lineage "
              + after.getLineage()
              + replaced);
      return;
    }
    if (!Objects.equals(before.getSerial(), after.getSerial())) {
      notices.normal(
          "StateChanged",
          "state serial "
              + before.serialText()
              + " -> "
              + after.serialText()
              + ", "
              + contents(after)
              + (after.getTerraformVersion() == null
                  ? ""
                  : ", written by Terraform " + after.getTerraformVersion()));
    }
  }

  private static String contents(StateFacts f) {
    return f.encrypted() ? "OpenTofu-encrypted" : f.getResources() + " resource instance(s)";
  }

  private static String versions(List<Secret> secrets) {
    return secrets.stream()
        .map(x -> x.getMetadata().getName() + "@" + x.getMetadata().getResourceVersion())
        .sorted()
        .collect(Collectors.joining("|"));
  }

  @Override
  public void close() {
    settler.close();
  }
}
