package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The record of a state write in progress: one Secret, {@code lh-journal-WS-NAME}, created before
 * the first state Secret changes and deleted once the last one is written. It names the version
 * being written and the one it replaces, both complete in history, so an interrupted write can be
 * finished (or dropped, if nothing of it was stored) by whoever finds the journal later. Its fixed
 * name also makes writes of one state exclusive across processes: a second create is refused.
 *
 * <p>The journal says by when its writer is done ({@code deadline}): a writer stops changing
 * Secrets at its deadline, and anyone else takes over only {@link #GRACE} after it (longer than a
 * request may stay unanswered), so a slow writer and a recovery never write at the same time. It
 * carries no Terraform label, so stock Terraform never reads it as a chunk.
 */
public final class WriteJournal {

  public static final String JOURNAL_LABEL = "leasehold.io/journal";
  static final String FROM = "leasehold.io/journal-from";
  static final String TO = "leasehold.io/journal-to";
  static final String SERIAL = "leasehold.io/journal-serial";
  static final String WRITER = "leasehold.io/journal-writer";
  static final String SETTLER = "leasehold.io/journal-settler";
  static final String STARTED = "leasehold.io/journal-started";
  static final String DEADLINE = "leasehold.io/journal-deadline";

  /** How long after a writer's deadline others wait before they finish its write. */
  public static final Duration GRACE = Duration.ofSeconds(30);

  private final KubernetesClient client;
  private final StateNames names;

  public WriteJournal(KubernetesClient client, StateNames names) {
    this.client = client;
    this.names = names;
  }

  /**
   * A write in progress.
   *
   * @param from history id of the version replaced, or null when there was none
   * @param to history id of the version written, or null when the state is being deleted
   * @param serial the serial written, as Terraform writes it
   * @param writer who asked for the write (for messages)
   * @param deadline when the writer stops; others take over {@link #GRACE} after it
   * @param secret the journal Secret as read (its version makes a takeover conditional)
   */
  public record Entry(
      String from,
      String to,
      String serial,
      String writer,
      Instant started,
      Instant deadline,
      Secret secret) {

    /** Whether its writer is certainly done with it at {@code now}. */
    public boolean abandoned(Instant now) {
      return now.isAfter(deadline.plus(GRACE));
    }

    /** When others may take it over. */
    public Instant takeoverAt() {
      return deadline.plus(GRACE);
    }
  }

  /** The journal Secret's name for this state. */
  public String name() {
    return "lh-journal-" + names.workspace() + "-" + names.name();
  }

  /** The write in progress, if any. */
  public Optional<Entry> read() {
    Secret s = client.secrets().inNamespace(names.namespace()).withName(name()).get();
    return Optional.ofNullable(s).map(WriteJournal::entry);
  }

  /**
   * Records a write about to start.
   *
   * @throws KubernetesClientException with code 409 when another write of this state is recorded
   */
  public Entry begin(String from, String to, String serial, String writer, Instant deadline) {
    Map<String, String> annotations = new HashMap<>();
    if (from != null) {
      annotations.put(FROM, from);
    }
    if (to != null) {
      annotations.put(TO, to);
    }
    annotations.put(SERIAL, serial);
    annotations.put(WRITER, writer);
    annotations.put(STARTED, Instant.now().toString());
    annotations.put(DEADLINE, deadline.toString());
    Secret journal =
        new SecretBuilder()
            .withNewMetadata()
            .withName(name())
            .withNamespace(names.namespace())
            .addToLabels(StateNames.LABEL_STATE, names.name())
            .addToLabels(StateHistory.WORKSPACE_LABEL, names.workspace())
            .addToLabels(JOURNAL_LABEL, "true")
            .withAnnotations(annotations)
            .endMetadata()
            .withType("Opaque")
            .build();
    return entry(client.secrets().inNamespace(names.namespace()).resource(journal).create());
  }

  /**
   * Takes an abandoned write over: moves its deadline to {@code deadline}, conditional on the
   * journal being as read, so that of several finders only one goes on.
   *
   * @throws KubernetesClientException with code 409 when someone else changed or took it first
   */
  public Entry takeOver(Entry entry, String by, Instant deadline) {
    Secret changed =
        new SecretBuilder(entry.secret())
            .editMetadata()
            .addToAnnotations(DEADLINE, deadline.toString())
            .addToAnnotations(SETTLER, by)
            .endMetadata()
            .build();
    return entry(client.secrets().inNamespace(names.namespace()).resource(changed).update());
  }

  /** Removes the journal as read: the write it records is settled. */
  public void end(Entry entry) {
    try {
      client
          .secrets()
          .inNamespace(names.namespace())
          .resource(entry.secret())
          .lockResourceVersion(entry.secret().getMetadata().getResourceVersion())
          .delete();
    } catch (KubernetesClientException e) {
      if (e.getCode() != 404) {
        throw e;
      }
    }
  }

  private static Entry entry(Secret s) {
    Map<String, String> a =
        s.getMetadata().getAnnotations() == null ? Map.of() : s.getMetadata().getAnnotations();
    return new Entry(
        a.get(FROM),
        a.get(TO),
        a.getOrDefault(SERIAL, "?"),
        a.getOrDefault(WRITER, "?"),
        instant(a.get(STARTED)),
        instant(a.get(DEADLINE)),
        s);
  }

  private static Instant instant(String text) {
    try {
      return text == null ? Instant.EPOCH : Instant.parse(text);
    } catch (DateTimeParseException e) {
      // A journal with a damaged deadline is taken as abandoned long ago.
      return Instant.EPOCH;
    }
  }
}
