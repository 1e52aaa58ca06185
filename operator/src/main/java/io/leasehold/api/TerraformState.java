package io.leasehold.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.generator.annotation.ValidationRule;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Categories;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.ShortNames;
import io.fabric8.kubernetes.model.annotation.Version;

/**
 * One Terraform state: its Secrets, its lock Lease and the runner Jobs queued for it.
 *
 * <p>The resource name becomes Terraform's {@code secret_suffix}, so it must make valid object
 * names and label values and must not look like a chunk number to Terraform.
 */
@Group(TerraformState.GROUP)
@Version(TerraformState.VERSION)
@ShortNames({"tfstate", "tfs"})
// kubectl get leasehold lists every TerraformState.
@Categories("leasehold")
@AdditionalPrinterColumn(name = "WORKSPACE", jsonPath = ".spec.workspace")
@AdditionalPrinterColumn(name = "HOLDER", jsonPath = ".status.holder")
@AdditionalPrinterColumn(
    name = "QUEUED",
    jsonPath = ".status.queued",
    type = AdditionalPrinterColumn.Type.INTEGER)
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
public class TerraformState extends CustomResource<TerraformStateSpec, TerraformStateStatus>
    implements Namespaced {

  public static final String GROUP = "leasehold.io";
  public static final String VERSION = "v1alpha1";
  public static final String PLURAL = "terraformstates";

  @Override
  protected TerraformStateSpec initSpec() {
    return new TerraformStateSpec();
  }
}
