package io.leasehold.state;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * Names and labels of the objects that hold one Terraform state, exactly as Terraform's {@code
 * kubernetes} backend names them for {@code secret_suffix = NAME} and workspace {@code WS}.
 */
public record StateNames(String namespace, String name, String workspace) {

  public static final String LABEL_TFSTATE = "tfstate";
  public static final String LABEL_SUFFIX = "tfstateSecretSuffix";
  public static final String LABEL_WORKSPACE = "tfstateWorkspace";
  public static final String LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";

  /** Label leasehold puts on objects it creates for a state (history Secrets, Leases). */
  public static final String LABEL_STATE = "leasehold.io/state";

  public static final String CHUNK_INFIX = "-part-";

  private static final Pattern DNS_LABEL = Pattern.compile("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  private static final Pattern DIGIT_SUFFIX = Pattern.compile("(^|-)[0-9]+$");
  private static final int MAX_LABEL_VALUE = 63;
  private static final int MAX_SUBDOMAIN = 253;

  /** {@code tfstate-WS-NAME}: the Secret holding the state (or its first chunk). */
  public String secretName() {
    return "tfstate-" + workspace + "-" + name;
  }

  /** {@code tfstate-WS-NAME-part-N}: the N-th extra chunk of a state larger than 1 MiB. */
  public String chunkSecretName(int n) {
    return secretName() + CHUNK_INFIX + n;
  }

  /** {@code lock-tfstate-WS-NAME}: the Lease holding the lock. */
  public String leaseName() {
    return "lock-" + secretName();
  }

  /** The labels Terraform's kubernetes backend puts on the state Secrets and on its Lease. */
  public Map<String, String> terraformLabels() {
    return Map.of(
        LABEL_TFSTATE,
        "true",
        LABEL_SUFFIX,
        name,
        LABEL_WORKSPACE,
        workspace,
        LABEL_MANAGED_BY,
        "terraform");
  }

  /**
   * Why these names cannot hold a state that stock Terraform can also use, or empty when they can.
   * The CRD refuses most of these at admission; this check covers what the schema cannot express
   * and clusters where the CRD's validation rules are not enforced.
   */
  public Optional<String> problem() {
    List<String> problems = new ArrayList<>();
    if (!DNS_LABEL.matcher(workspace).matches() || workspace.length() > MAX_LABEL_VALUE) {
      problems.add(
          "workspace '"
              + workspace
              + "' is not a DNS label (lowercase letters, digits and '-', at most 63)");
    }
    if (name.length() > MAX_LABEL_VALUE) {
      problems.add(
          "name '"
              + name
              + "' is longer than 63 characters, the limit of the tfstateSecretSuffix label");
    }
    if (DIGIT_SUFFIX.matcher(name).find()) {
      problems.add(
          "name '"
              + name
              + "' ends in '-<digits>', which Terraform's kubernetes backend reads as a chunk"
              + " number and crashes on");
    }
    if (leaseName().length() + CHUNK_INFIX.length() + 4 > MAX_SUBDOMAIN) {
      problems.add("the Secret and Lease names derived from name and workspace are too long");
    }
    return problems.isEmpty() ? Optional.empty() : Optional.of(String.join("; ", problems));
  }

  /**
   * The chunk number of a Secret named {@code tfstate-WS-NAME-part-N}, 0 for the main Secret, or -1
   * when the name is neither.
   */
  public int chunkIndex(String secretName) {
    if (secretName.equals(secretName())) {
      return 0;
    }
    String prefix = secretName() + CHUNK_INFIX;
    if (!secretName.startsWith(prefix)) {
      return -1;
    }
    String digits = secretName.substring(prefix.length());
    if (digits.isEmpty() || digits.length() > 6 || !digits.chars().allMatch(Character::isDigit)) {
      return -1;
    }
    return Integer.parseInt(digits);
  }
}
