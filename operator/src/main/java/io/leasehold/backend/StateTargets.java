package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import java.util.regex.Pattern;

/** Finds the TerraformState a request addresses ({@code /v1/states/NS/NAME}) and its names. */
final class StateTargets {

  private static final Pattern DNS_LABEL = Pattern.compile("[a-z0-9]([-a-z0-9]*[a-z0-9])?");

  private volatile StateBackend.States states;
  private volatile StateOwnership.Stored ownership;

  StateTargets(StateBackend.States states, StateOwnership.Stored ownership) {
    this.states = states;
    this.ownership = ownership;
  }

  /** Where ownership of names is checked from from now on. */
  void checkOwnership(StateOwnership.Stored ownership) {
    this.ownership = ownership;
  }

  /** Where TerraformStates are looked up from now on. */
  void use(StateBackend.States states) {
    this.states = states;
  }

  /**
   * The TerraformState at {@code /v1/states/NS/NAME}.
   *
   * @throws ReplyException 400 for a namespace or name that cannot be one, 404 when there is no
   *     such TerraformState, 422 when its names cannot hold a state
   */
  StateBackend.Target resolve(String namespace, String name) {
    if (namespace == null || namespace.length() > 63 || !DNS_LABEL.matcher(namespace).matches()) {
      throw ReplyException.text(
          400,
          "'"
              + DisplayText.clean(namespace, 80)
              + "' is not a namespace name: the address is /v1/states/NS/NAME");
    }
    if (name == null || name.length() > 63 || !DNS_LABEL.matcher(name).matches()) {
      throw ReplyException.text(
          400,
          "'"
              + DisplayText.clean(name, 80)
              + "' is not a TerraformState name (a DNS label): the address is /v1/states/NS/NAME");
    }
    TerraformState state = states.find(namespace, name);
    if (state == null) {
      throw ReplyException.text(
          404,
          "no TerraformState "
              + namespace
              + "/"
              + name
              + ": create it (kubectl apply) before using this backend address");
    }
    if (state.getSpec() == null) {
      throw ReplyException.text(
          422,
          "TerraformState "
              + namespace
              + "/"
              + name
              + TolerantSerialization.unreadable(state)
                  .map(u -> ": " + u.says() + "; correct it")
                  .orElse(" has no spec, and spec.workspace selects the state: restore the spec"));
    }
    StateNames names = new StateNames(namespace, name, state.getSpec().getWorkspace());
    names
        .problem()
        .ifPresent(
            p -> {
              throw ReplyException.text(422, "TerraformState " + namespace + "/" + name + ": " + p);
            });
    // One state, one owner: nothing of another TerraformState's state is reached through this one.
    StateOwnership.check(state, ownership)
        .ifPresent(
            c -> {
              throw ReplyException.text(
                  409,
                  "TerraformState "
                      + namespace
                      + "/"
                      + name
                      + " is refused (NameCollision): "
                      + c.message());
            });
    return new StateBackend.Target(state, names);
  }

  static String describe(StateBackend.Target target) {
    return "TerraformState " + target.names().namespace() + "/" + target.names().name();
  }
}
