package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.RequestConfigBuilder;
import io.leasehold.api.StateFacts;
import io.leasehold.kube.SecretMetadata;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

/**
 * Writes a state so that no reader is ever left with a torn one. Terraform's format spreads a large
 * state over several Secrets, written one at a time; a write cut short leaves old and new chunks
 * mixed. So a write first records itself in a {@link WriteJournal} that names the version it
 * writes, then stores that version, whole, in history, then changes the state Secrets, then removes
 * the journal. Whenever a write is cut short (an API error, a crash, a writer too slow), whoever
 * finds its journal settles it:
 *
 * <ul>
 *   <li>if the copy in history is absent or cut short, no state Secret was touched: the write is
 *       <b>dropped</b> with what there is of the copy;
 *   <li>if any state Secret already holds the new version, the write is <b>rolled forward</b> from
 *       the copy in history;
 *   <li>if none does, it is <b>dropped</b>: the old version stands, and the unused copy goes;
 *   <li>if a Secret holds neither version, someone else wrote meanwhile: nothing is changed, and
 *       both versions stay in history.
 * </ul>
 *
 * <p>The writer settles its own write at once when it can; otherwise anyone does after the
 * journal's deadline (the operator on its next look, or the next request for the state). Every
 * Secret change is conditional on the version read, so two settlers never undo each other.
 */
public final class StateWriter {

  /** Time a write may take before others may settle it: a base and a share per Secret. */
  static final Duration BASE_BUDGET = Duration.ofSeconds(5);

  static final Duration PER_SECRET = Duration.ofSeconds(1);

  private static final int SETTLE_ATTEMPTS = 3;

  /** How a write, or the settling of an interrupted one, ended. */
  public enum Result {
    /** Every state Secret holds the new version. */
    WRITTEN,
    /** No state Secret holds the new version: the version before stands. */
    NOTHING_WRITTEN,
    /**
     * Interrupted and not settled yet: it is settled once its journal's deadline passed, as the new
     * version if any of it was stored, else as the old.
     */
    PENDING,
    /** Another writer changed the state Secrets meanwhile: they are left as they are. */
    OVERTAKEN
  }

  /**
   * @param journal the write's journal (its deadline says when a pending write is settled)
   * @param interrupted whether the write was cut short before this outcome (then it was settled)
   * @param changed how many state Secrets the settling changed
   * @param cause why it was interrupted, or why it is still pending
   */
  public record Outcome(
      Result result, WriteJournal.Entry journal, boolean interrupted, int changed, String cause) {}

  /** The Event reason that tells what became of an interrupted write. */
  public static String eventReason(Outcome outcome) {
    return switch (outcome.result()) {
      case WRITTEN -> "WriteCompleted";
      case NOTHING_WRITTEN -> "WriteDropped";
      case PENDING -> "WriteInterrupted";
      case OVERTAKEN -> "WriteOvertaken";
    };
  }

  /** What became of an interrupted write, in a sentence (for an Event or a reply). */
  public static String describe(Outcome outcome) {
    WriteJournal.Entry j = outcome.journal();
    String write =
        j.to() == null
            ? "the deletion of the state (serial " + j.serial() + ") by " + j.writer()
            : "the write of serial " + j.serial() + " by " + j.writer();
    String cause = outcome.cause() == null ? "" : " (" + outcome.cause() + ")";
    return switch (outcome.result()) {
      case WRITTEN ->
          write
              + " was interrupted"
              + cause
              + (j.to() == null
                  ? " and completed"
                  : " and completed from its copy in history (version " + j.to() + ")");
      case NOTHING_WRITTEN ->
          write
              + " was interrupted"
              + cause
              + " before any state Secret held it, and dropped: the state is as it was before it";
      case PENDING ->
          write
              + " was interrupted"
              + cause
              + "; it is settled automatically after "
              + j.takeoverAt()
              + ": completed as serial "
              + j.serial()
              + " if any part of it was stored, otherwise dropped";
      case OVERTAKEN ->
          write
              + " was interrupted"
              + cause
              + ": another writer changed the state Secrets meanwhile, so they are left as that"
              + " writer left them; the version this write sent is kept in history as "
              + j.to();
    };
  }

  /** A version to write: its gzip parts, its facts and the MD5 of its JSON. */
  public record NewVersion(List<Chunk> parts, StateFacts facts, String md5) {}

  private final KubernetesClient client;
  private final StateNames names;
  private final StateStore store;
  private final StateHistory history;
  private final WriteJournal journal;

  /**
   * Clients that do not retry on their own: a write must know at once that a request failed, so
   * that it never runs past its deadline, and settle it itself (the settling is the retry).
   */
  private static final Map<KubernetesClient, KubernetesClient> NO_RETRY =
      java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

  public StateWriter(KubernetesClient shared, StateNames names) {
    KubernetesClient client =
        NO_RETRY.computeIfAbsent(
            shared,
            c ->
                c.newClient(
                        new RequestConfigBuilder(c.getConfiguration().getRequestConfig())
                            .withRequestRetryBackoffLimit(0)
                            .build())
                    .adapt(KubernetesClient.class));
    this.client = client;
    this.names = names;
    this.store = new StateStore(client, names);
    this.history = new StateHistory(client, names);
    this.journal = new WriteJournal(client, names);
  }

  /**
   * Replaces the state with {@code version}. {@code read} are the state Secrets the caller read and
   * checked the write against (none when there is no state yet): each is changed only at the
   * version read. {@code from} is the history id of the version they hold (null if none).
   *
   * @param reason why the new version is kept in history
   * @param writer who writes, for the journal and messages
   * @param keep versions history keeps once the write is done
   * @throws KubernetesClientException with code 409 when another write of the state is in progress,
   *     or when the state changed before anything was written; nothing then changed
   */
  public Outcome write(
      NewVersion version, List<Secret> read, String from, String reason, String writer, int keep) {
    // The journal comes first and names the copy before it is made, so that a writer stopped at
    // any point leaves a journal that settles what it did (a copy cut short is dropped with it).
    String to = StateHistory.newId(version.facts());
    WriteJournal.Entry entry =
        journal.begin(
            from,
            to,
            version.facts().serialText(),
            writer,
            deadline(version.parts().size() + Math.max(version.parts().size(), read.size())));
    try {
      history.save(to, version.parts(), version.facts(), version.md5(), reason);
    } catch (RuntimeException failure) {
      return settleOwn(entry, failure, keep);
    }
    int done;
    try {
      done = apply(entry, version.parts(), read);
    } catch (RuntimeException failure) {
      return settleOwn(entry, failure, keep);
    }
    try {
      finish(entry, keep);
    } catch (RuntimeException e) {
      // The state is whole; a journal left behind is found to be settled and removed later.
    }
    return new Outcome(Result.WRITTEN, entry, false, done, null);
  }

  /**
   * Deletes the state Secrets {@code read} (each at the version read), journaled like a write: an
   * interrupted delete is finished, or dropped if nothing was deleted yet. {@code from} is the
   * history id of the version they hold.
   *
   * @throws KubernetesClientException with code 409 when another write is in progress
   */
  public Outcome delete(List<Secret> read, String from, String serial, String writer) {
    WriteJournal.Entry entry = journal.begin(from, null, serial, writer, deadline(read.size()));
    int done = 0;
    try {
      // The last chunk first, the main Secret last.
      List<Secret> ordered = new ArrayList<>(read);
      ordered.sort(
          (a, b) ->
              Integer.compare(
                  names.chunkIndex(b.getMetadata().getName()),
                  names.chunkIndex(a.getMetadata().getName())));
      for (Secret s : ordered) {
        inTime(entry);
        store.remove(s);
        done++;
      }
    } catch (RuntimeException failure) {
      return settleOwn(entry, failure, -1);
    }
    try {
      journal.end(entry);
    } catch (RuntimeException e) {
      // The state is gone; a journal left behind is found to be settled and removed later.
    }
    return new Outcome(Result.WRITTEN, entry, false, done, null);
  }

  /**
   * Settles a write found in the journal if its writer is certainly gone (its deadline and {@link
   * WriteJournal#GRACE} passed): empty when there is none, PENDING when it is not due yet.
   *
   * @param by who settles it, for the journal
   * @throws KubernetesClientException when the API fails meanwhile (the journal stays)
   */
  public Optional<Outcome> settleAbandoned(String by, int keep) {
    Optional<WriteJournal.Entry> found = journal.read();
    if (found.isEmpty()) {
      return Optional.empty();
    }
    WriteJournal.Entry entry = found.get();
    if (!entry.abandoned(Instant.now())) {
      return Optional.of(new Outcome(Result.PENDING, entry, true, 0, "in progress"));
    }
    int secrets =
        Math.max(
            history.find(entry.to()).map(v -> v.chunks().size()).orElse(1),
            entry.from() == null
                ? 1
                : history.find(entry.from()).map(v -> v.chunks().size()).orElse(1));
    WriteJournal.Entry mine;
    try {
      mine = journal.takeOver(entry, by, deadline(secrets));
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409 || e.getCode() == 404) {
        // Someone else took it over or settled it first.
        return Optional.of(new Outcome(Result.PENDING, entry, true, 0, "settled elsewhere"));
      }
      throw e;
    }
    return Optional.of(settleWithin(mine, keep, "its writer stopped before it was done", true));
  }

  /** Changes the state Secrets to {@code parts}; returns how many it changed. */
  private int apply(WriteJournal.Entry entry, List<Chunk> parts, List<Secret> read) {
    Map<Integer, Secret> existing = new TreeMap<>();
    read.forEach(s -> existing.put(names.chunkIndex(s.getMetadata().getName()), s));
    if (read.isEmpty()) {
      // A Secret without the tfstate key (Terraform's "no state yet") is updated in place. One
      // that holds a state was written since this writer found none (another replica, stock
      // Terraform): writing over it would lose that state, so the write is a conflict.
      Secret main = store.secretAt(0);
      if (main != null) {
        String data = main.getData() == null ? null : main.getData().get("tfstate");
        if (data != null && !data.isEmpty()) {
          throw new KubernetesClientException(
              "state Secret " + names.secretName() + " was written since it was read", 409, null);
        }
        existing.put(0, withoutData(main));
      }
    }
    int changed = 0;
    for (int i = 0; i < parts.size(); i++) {
      inTime(entry);
      store.put(i, parts.get(i).base64(), existing.get(i));
      changed++;
    }
    for (var e : existing.entrySet()) {
      if (e.getKey() >= parts.size()) {
        inTime(entry);
        store.remove(e.getValue());
        changed++;
      }
    }
    return changed;
  }

  /** The writer's own settling after a failure. */
  private Outcome settleOwn(WriteJournal.Entry entry, RuntimeException failure, int keep) {
    // After a request that got no answer, it may still land: then only the deadline frees it.
    return settleWithin(entry, keep, describe(failure), answered(failure));
  }

  /**
   * Settles {@code entry} with a few tries before its deadline. If none works and every request was
   * answered (none can still land), its deadline is moved to now, so that anyone may settle it at
   * once; otherwise the deadline stands.
   */
  private Outcome settleWithin(
      WriteJournal.Entry entry, int keep, String cause, boolean releasable) {
    RuntimeException last = null;
    for (int attempt = 0; attempt < SETTLE_ATTEMPTS; attempt++) {
      if (Instant.now().isAfter(entry.deadline())) {
        break;
      }
      try {
        Outcome settled = settle(entry);
        finish(entry, settled.result() == Result.NOTHING_WRITTEN ? -1 : keep);
        String why =
            settled.cause() == null
                ? cause
                : cause == null ? settled.cause() : cause + "; " + settled.cause();
        return new Outcome(settled.result(), entry, true, settled.changed(), why);
      } catch (RuntimeException e) {
        last = e;
        pause(100L << attempt);
      }
    }
    if (releasable && (last == null || answered(last))) {
      try {
        entry = journal.takeOver(entry, entry.writer(), Instant.now().minus(WriteJournal.GRACE));
      } catch (RuntimeException e) {
        // The API is still failing: the journal's own deadline holds.
      }
    }
    return new Outcome(
        Result.PENDING, entry, true, 0, last == null ? cause : cause + "; then " + describe(last));
  }

  /** Whether the API answered the failed request (so that it cannot still take effect). */
  private static boolean answered(RuntimeException e) {
    return e instanceof KubernetesClientException k && k.getCode() > 0;
  }

  /** Settles the write {@code entry} records, within its deadline; the journal stays. */
  private Outcome settle(WriteJournal.Entry entry) {
    boolean deletion = entry.to() == null;
    // A copy that is absent or cut short means the writer stopped before it changed any state
    // Secret (it changes them only once the copy is whole): nothing can hold the new version.
    Optional<VersionData> to =
        deletion
            ? Optional.empty()
            : history.find(entry.to()).filter(StateHistory.Version::complete).map(VersionData::new);
    Optional<VersionData> from =
        entry.from() == null ? Optional.empty() : history.find(entry.from()).map(VersionData::new);
    if (entry.from() != null && from.isEmpty() && to.isEmpty() && !deletion) {
      throw new IllegalStateException(
          "both versions of the interrupted write are gone from history");
    }
    int newCount = to.map(VersionData::count).orElse(0);
    int oldCount = from.map(VersionData::count).orElse(0);
    Map<Integer, Secret> present = present();
    int last =
        Math.max(
            Math.max(newCount, oldCount),
            present.keySet().stream().max(Integer::compare).orElse(-1) + 1);
    List<Secret> current = new ArrayList<>();
    List<Boolean> isNew = new ArrayList<>();
    boolean anyNewOnly = false;
    boolean allNew = true;
    for (int i = 0; i < last; i++) {
      Secret now = present.containsKey(i) ? store.secretAt(i) : null;
      String data = dataOf(now);
      boolean holdsNew =
          deletion
              ? now == null
              : to.isPresent()
                  && (i < newCount ? Objects.equals(data, to.get().data(i)) : now == null);
      boolean holdsOld =
          i < oldCount
              ? Objects.equals(data, from.get().data(i))
              : now == null || (i == 0 && oldCount == 0 && data == null);
      if (!holdsNew && !holdsOld) {
        return new Outcome(
            Result.OVERTAKEN,
            entry,
            true,
            0,
            (now == null
                    ? "Secret " + name(i) + " was deleted"
                    : "Secret " + now.getMetadata().getName() + " holds neither version")
                + " by another writer");
      }
      anyNewOnly |= holdsNew && !holdsOld;
      allNew &= holdsNew;
      current.add(now == null ? null : withoutData(now));
      isNew.add(holdsNew);
    }
    if (allNew && (deletion || to.isPresent())) {
      return new Outcome(Result.WRITTEN, entry, true, 0, null);
    }
    if (!anyNewOnly) {
      if (!deletion) {
        history.find(entry.to()).ifPresent(history::delete);
      }
      return new Outcome(Result.NOTHING_WRITTEN, entry, true, 0, null);
    }
    // Mixed: roll forward from the copy in history.
    int changed = 0;
    for (int i = 0; i < last; i++) {
      if (isNew.get(i)) {
        continue;
      }
      inTime(entry);
      if (i < newCount) {
        store.put(i, to.get().data(i), current.get(i));
      } else {
        store.remove(current.get(i));
      }
      changed++;
    }
    return new Outcome(Result.WRITTEN, entry, true, changed, null);
  }

  /** Ends the journal and drops versions beyond {@code keep} (none when keep is negative). */
  private void finish(WriteJournal.Entry entry, int keep) {
    journal.end(entry);
    if (keep >= 0) {
      try {
        history.prune(keep, Set.of());
      } catch (RuntimeException e) {
        // Extra versions are kept until the next write prunes them.
      }
    }
  }

  /** The state's Secrets by chunk index, without their data. */
  private Map<Integer, Secret> present() {
    Map<Integer, Secret> present = new TreeMap<>();
    for (Secret s :
        SecretMetadata.list(
            client,
            names.namespace(),
            Map.of(
                StateNames.LABEL_SUFFIX,
                names.name(),
                StateNames.LABEL_WORKSPACE,
                names.workspace()))) {
      int index = names.chunkIndex(s.getMetadata().getName());
      if (index >= 0) {
        present.put(index, s);
      }
    }
    if (!present.containsKey(0) && store.secretAt(0) != null) {
      present.put(0, store.secretAt(0));
    }
    return present;
  }

  /** A kept version's data, fetched one Secret at a time when asked for. */
  private final class VersionData {
    private final StateHistory.Version version;

    VersionData(StateHistory.Version version) {
      this.version = version;
    }

    int count() {
      return version.chunks().size();
    }

    String data(int index) {
      String name = version.chunks().get(index).getMetadata().getName();
      Secret s = client.secrets().inNamespace(names.namespace()).withName(name).get();
      if (s == null) {
        throw new IllegalStateException(
            "history version " + version.id() + " lost its Secret " + name);
      }
      return dataOf(s);
    }
  }

  private String name(int index) {
    return index == 0 ? names.secretName() : names.chunkSecretName(index);
  }

  private static String dataOf(Secret s) {
    return s == null || s.getData() == null ? null : s.getData().get(StoredState.DATA_KEY);
  }

  private static Secret withoutData(Secret s) {
    return new SecretBuilder(s).withData(null).withStringData(null).build();
  }

  /** Stops a writer at its deadline: past it, others may be settling its write. */
  private static void inTime(WriteJournal.Entry entry) {
    if (Instant.now().isAfter(entry.deadline())) {
      throw new IllegalStateException(
          "the write took longer than its deadline " + entry.deadline() + " and was stopped");
    }
  }

  private static Instant deadline(int secrets) {
    return Instant.now().plus(BASE_BUDGET).plus(PER_SECRET.multipliedBy(Math.max(1, secrets)));
  }

  private static void pause(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static String describe(RuntimeException e) {
    if (e instanceof KubernetesClientException k && k.getCode() > 0) {
      return "the API server answered " + k.getCode() + ": " + k.getMessage();
    }
    return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
  }
}
