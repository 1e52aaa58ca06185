package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonAnyGetter;
import com.fasterxml.jackson.annotation.JsonAnySetter;
import com.fasterxml.jackson.annotation.JsonClassDescription;
import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.ValidationRule;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Categories;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.ShortNames;
import io.fabric8.kubernetes.model.annotation.Version;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One Terraform state: its Secrets, its lock Lease and the runner Jobs queued for it.
 *
 * <p>The resource name becomes Terraform's {@code secret_suffix}, so it must make valid object
 * names and label values and must not look like a chunk number to Terraform.
 *
 * <p>{@code spec} and {@code spec.workspace} cannot be removed or nulled, and the workspace cannot
 * change (rules on the whole object, since a rule on a field is not checked once the field is
 * gone). Read from an API that did not enforce them, a TerraformState without spec has none ({@link
 * #getSpec()} is null) rather than a default one, so it is never taken for workspace {@code
 * default}.
 *
 * <p>Fields it does not know, at the top and within spec and status, are kept and written back as
 * they were ({@link KeepsUnknownFields}). A top-level field whose value cannot be read at all (a
 * spec that does not fit this version's types) is kept here as it is, among the additional
 * properties, and its typed field stays null (see {@code io.leasehold.kube.TolerantSerialization}).
 */
@JsonClassDescription(
    "One Terraform state kept by leasehold: the state stays in the Secret"
        + " tfstate-<workspace>-<name> and its lock is the Lease lock-tfstate-<workspace>-<name>,"
        + " where Terraform's own kubernetes backend keeps them. leasehold queues the runner Jobs"
        + " labelled leasehold.io/state=<name> and runs them one at a time, serves the state through"
        + " a Terraform HTTP backend that refuses every write that would lose data, and reports the"
        + " lock's holder, the line and the stored state in status and Events. The name is"
        + " Terraform's secret_suffix.")
@Group(TerraformState.GROUP)
@Version(TerraformState.VERSION)
@ShortNames({"tfstate", "tfs"})
// kubectl get leasehold lists every TerraformState.
@Categories("leasehold")
@AdditionalPrinterColumn(name = "WORKSPACE", jsonPath = ".spec.workspace")
@AdditionalPrinterColumn(name = "HOLDER", jsonPath = ".status.holder")
@AdditionalPrinterColumn(
    name = "HOLDERS",
    jsonPath = ".status.holders",
    type = AdditionalPrinterColumn.Type.INTEGER)
@AdditionalPrinterColumn(
    name = "QUEUED",
    jsonPath = ".status.queued",
    type = AdditionalPrinterColumn.Type.INTEGER)
@AdditionalPrinterColumn(
    name = "HELD",
    jsonPath = ".spec.queue.hold",
    type = AdditionalPrinterColumn.Type.BOOLEAN)
@AdditionalPrinterColumn(
    name = "SERIAL",
    jsonPath = ".status.state.serial",
    type = AdditionalPrinterColumn.Type.INTEGER)
@AdditionalPrinterColumn(
    name = "RESOURCES",
    jsonPath = ".status.state.resources",
    type = AdditionalPrinterColumn.Type.INTEGER)
@AdditionalPrinterColumn(
    name = "READY",
    jsonPath = ".status.conditions[?(@.type==\"Ready\")].status",
    priority = 1)
@AdditionalPrinterColumn(
    name = "AGE",
    jsonPath = ".metadata.creationTimestamp",
    type = AdditionalPrinterColumn.Type.DATE)
@ValidationRule(
    value = "size(self.metadata.name) <= 63",
    message =
        "metadata.name must be at most 63 characters: it becomes the tfstateSecretSuffix label"
            + " of the state Secret and lock Lease, and label values are limited to 63")
@ValidationRule(
    value = "!self.metadata.name.matches('(^|-)[0-9]+$')",
    message =
        "metadata.name must not end in '-<digits>' (for example 'network-2'): Terraform's"
            + " kubernetes backend reads that suffix as a state chunk number and crashes;"
            + " use a name such as 'network-v2'")
@ValidationRule(
    value = "has(self.spec) && has(self.spec.workspace)",
    message =
        "spec.workspace is required: it selects the state (Secret tfstate-<workspace>-<name>), so"
            + " spec and spec.workspace cannot be removed or set to null")
@ValidationRule(
    value =
        "!has(oldSelf.spec) || !has(oldSelf.spec.workspace) || (has(self.spec) &&"
            + " has(self.spec.workspace) && self.spec.workspace == oldSelf.spec.workspace)",
    message =
        "workspace is immutable: it selects which state this resource manages; create"
            + " another TerraformState for another workspace")
public class TerraformState extends CustomResource<TerraformStateSpec, TerraformStateStatus>
    implements Namespaced {

  public static final String GROUP = "leasehold.io";
  public static final String VERSION = "v1alpha1";
  public static final String PLURAL = "terraformstates";

  private final Map<String, Object> additionalProperties = new LinkedHashMap<>();

  /** A new TerraformState with the default spec, for creating one. */
  public TerraformState() {
    super();
  }

  /**
   * As read from JSON: the spec given, or none when the JSON has none (not the default spec a new
   * object starts with).
   */
  @JsonCreator(mode = JsonCreator.Mode.PROPERTIES)
  static TerraformState read(@JsonProperty("spec") TerraformStateSpec spec) {
    TerraformState state = new TerraformState();
    state.setSpec(spec);
    return state;
  }

  /** The spec; null only when read from an API that let it be removed. */
  @Override
  @Default("{}")
  @JsonPropertyDescription(
      "Which state this resource manages (the workspace, immutable) and how leasehold keeps it:"
          + " versions kept, deletion policy, OpenTofu encryption, lock settings.")
  public TerraformStateSpec getSpec() {
    return super.getSpec();
  }

  @Override
  @JsonPropertyDescription(
      "What leasehold observed, written by the operator: the lock's holder and the line waiting"
          + " for it, facts of the stored state (serial, lineage, size, resources) and the Ready,"
          + " Locked and Degraded conditions.")
  public TerraformStateStatus getStatus() {
    return super.getStatus();
  }

  /**
   * Top-level fields this class does not declare, and a declared one that could not be read, kept
   * as read so that writing this object back leaves them as they were.
   */
  @JsonAnyGetter
  @JsonIgnore
  public Map<String, Object> getAdditionalProperties() {
    return additionalProperties;
  }

  @JsonAnySetter
  public void setAdditionalProperty(String name, Object value) {
    additionalProperties.put(name, value);
  }

  @Override
  protected TerraformStateSpec initSpec() {
    return new TerraformStateSpec();
  }
}
