package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Size;
import io.fabric8.generator.annotation.ValidationRule;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class TerraformStateSpec extends KeepsUnknownFields {

  public static final String DEFAULT_WORKSPACE = "default";

  @JsonPropertyDescription(
      "Terraform workspace of the state. The state lives in the Secret"
          + " tfstate-<workspace>-<metadata.name>, as Terraform's kubernetes backend stores it."
          + " Immutable.")
  @Default(DEFAULT_WORKSPACE)
  @Size(min = 1, max = 63)
  @ValidationRule(
      value = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
      message =
          "workspace must be a DNS label (lowercase letters, digits and '-', starting and ending"
              + " with a letter or digit): it becomes part of the Secret name"
              + " tfstate-<workspace>-<name>")
  // Immutable: one rule on the resource says so (TerraformState), also when spec or the
  // workspace is removed; a second one here would print the same refusal twice.
  private String workspace = DEFAULT_WORKSPACE;

  @JsonPropertyDescription("How the state's lock Lease is held for runners leasehold admits.")
  @Default("{}")
  private LockSpec lock = new LockSpec();

  @JsonPropertyDescription(
      "How runs wait for the lock: whether the queue is held, and whether redundant runs of a"
          + " run group are skipped.")
  @Default("{}")
  private QueueSpec queue = new QueueSpec();

  @JsonPropertyDescription("How many earlier versions of the state are kept.")
  @Default("{}")
  private HistorySpec history = new HistorySpec();

  @JsonPropertyDescription(
      "Whether the state must be OpenTofu client-side encrypted (encryption.required).")
  @Default("{}")
  private EncryptionSpec encryption = new EncryptionSpec();

  @JsonPropertyDescription(
      "What deleting this resource does to the state. Retain (default) keeps the state Secrets,"
          + " history and Lease for stock Terraform; Delete removes them once the state is"
          + " unlocked.")
  @Default("Retain")
  private DeletionPolicy deletionPolicy = DeletionPolicy.Retain;

  public String getWorkspace() {
    return workspace == null ? DEFAULT_WORKSPACE : workspace;
  }

  public void setWorkspace(String workspace) {
    this.workspace = workspace;
  }

  public QueueSpec getQueue() {
    return queue == null ? new QueueSpec() : queue;
  }

  public void setQueue(QueueSpec queue) {
    this.queue = queue;
  }

  public LockSpec getLock() {
    return lock == null ? new LockSpec() : lock;
  }

  public void setLock(LockSpec lock) {
    this.lock = lock;
  }

  public HistorySpec getHistory() {
    return history == null ? new HistorySpec() : history;
  }

  public void setHistory(HistorySpec history) {
    this.history = history;
  }

  public EncryptionSpec getEncryption() {
    return encryption == null ? new EncryptionSpec() : encryption;
  }

  public void setEncryption(EncryptionSpec encryption) {
    this.encryption = encryption;
  }

  public DeletionPolicy getDeletionPolicy() {
    return deletionPolicy == null ? DeletionPolicy.Retain : deletionPolicy;
  }

  public void setDeletionPolicy(DeletionPolicy deletionPolicy) {
    this.deletionPolicy = deletionPolicy;
  }
}
