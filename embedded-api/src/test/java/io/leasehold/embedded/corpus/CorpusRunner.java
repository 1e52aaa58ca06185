package io.leasehold.embedded.corpus;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.internal.SSLUtils;
import io.leasehold.embedded.corpus.Corpus.Case;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Runs the corpus against one API server, the embedded one or a real one, and returns each case's
 * outcome in a form that can be compared between them: for each step its status code, the {@code
 * reason} and {@code details.causes[].field} of a refusal, and what the step asked to compare of
 * the answer; then the objects its {@code after} paths read. What a server makes up (uid,
 * resourceVersion, timestamps, managedFields, generated name suffixes, the case's namespace) is set
 * aside.
 */
public final class CorpusRunner {

  static final ObjectMapper JSON = new ObjectMapper();
  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

  /** Who the operator is to the chart's admission policies. */
  static final String OPERATOR = "system:serviceaccount:leasehold-system:leasehold";

  /** Collections by kind, for setup objects and path shorthands. */
  private static final Map<String, String> COLLECTIONS =
      Map.ofEntries(
          Map.entry("ConfigMap", "/api/v1/namespaces/{ns}/configmaps"),
          Map.entry("Secret", "/api/v1/namespaces/{ns}/secrets"),
          Map.entry("ServiceAccount", "/api/v1/namespaces/{ns}/serviceaccounts"),
          Map.entry("Pod", "/api/v1/namespaces/{ns}/pods"),
          Map.entry("Service", "/api/v1/namespaces/{ns}/services"),
          Map.entry("Event", "/api/v1/namespaces/{ns}/events"),
          Map.entry("Lease", "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
          Map.entry("Job", "/apis/batch/v1/namespaces/{ns}/jobs"),
          Map.entry("CronJob", "/apis/batch/v1/namespaces/{ns}/cronjobs"),
          Map.entry("Role", "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
          Map.entry(
              "TerraformState", "/apis/leasehold.io/v1alpha1/namespaces/{ns}/terraformstates"));

  private static final Map<String, String> SHORTHANDS =
      Map.ofEntries(
          Map.entry("{cm}", COLLECTIONS.get("ConfigMap")),
          Map.entry("{secrets}", COLLECTIONS.get("Secret")),
          Map.entry("{sa}", COLLECTIONS.get("ServiceAccount")),
          Map.entry("{pods}", COLLECTIONS.get("Pod")),
          Map.entry("{events}", COLLECTIONS.get("Event")),
          Map.entry("{leases}", COLLECTIONS.get("Lease")),
          Map.entry("{jobs}", COLLECTIONS.get("Job")),
          Map.entry("{cronjobs}", COLLECTIONS.get("CronJob")),
          Map.entry("{tfs}", COLLECTIONS.get("TerraformState")));

  private static final Pattern KUBECTL_REQUEST =
      Pattern.compile("\\] (GET|POST|PUT|PATCH|DELETE) (?:https?://[^/ ]+)?(/\\S*) (\\d{3}) ");
  private static final Pattern KUBECTL_REASON = Pattern.compile("Error from server \\((\\w+)\\)");

  private static final Pattern UUID_VALUE =
      Pattern.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");

  /**
   * Objects that controllers of a real control plane, not its API server, put in every namespace:
   * not compared.
   */
  private static final java.util.Set<String> MADE_BY_CONTROLLERS =
      java.util.Set.of("kube-root-ca.crt");

  /** {@code "@repeat:x:300000"}: a string of 300000 x, for oversized values. */
  private static final Pattern REPEAT = Pattern.compile("@repeat:([a-z]):(\\d+)");

  private static final Pattern PLACEHOLDER = Pattern.compile("\\{(uid|rv):([^}]+)\\}");

  /** An API server to run the corpus against. */
  public record Target(String url, Path kubeconfig, HttpClient http) {

    /** A target from a kubeconfig (its current context's server and credentials). */
    public static Target fromKubeconfig(Path kubeconfig) {
      try {
        Config config = Config.fromKubeconfig(Files.readString(kubeconfig, StandardCharsets.UTF_8));
        HttpClient.Builder http =
            HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10));
        if (config.getMasterUrl().startsWith("https")) {
          http.sslContext(SSLUtils.sslContext(config));
        }
        String url = config.getMasterUrl().replaceFirst("/$", "");
        return new Target(url, kubeconfig, http.build());
      } catch (Exception e) {
        throw new IllegalStateException("cannot read kubeconfig " + kubeconfig + ": " + e, e);
      }
    }
  }

  private final Corpus corpus;
  private final Target target;
  private final Path kubectlCache;
  private final String runId = UUID.randomUUID().toString().substring(0, 4);
  private final List<String> namespaces = new ArrayList<>();

  public CorpusRunner(Corpus corpus, Target target) {
    this.corpus = corpus;
    this.target = target;
    try {
      this.kubectlCache = Files.createTempDirectory("corpus-kubectl-cache");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The namespaces the cases ran in, to delete afterwards. */
  public List<String> namespaces() {
    return namespaces;
  }

  /** Runs every case in order; returns the outcomes by case id. */
  public Map<String, JsonNode> runAll() {
    Map<String, JsonNode> outcomes = new LinkedHashMap<>();
    int i = 0;
    for (Case c : corpus.cases()) {
      outcomes.put(c.id(), run(c, i++));
    }
    return outcomes;
  }

  /** What one case's requests got, with what servers make up set aside. */
  public JsonNode run(Case c, int index) {
    String ns = "corpus-" + runId + "-" + index;
    namespaces.add(ns);
    Context context = new Context(ns);
    ObjectNode outcome = NODES.objectNode();
    Answer created = send("POST", "/api/v1/namespaces", null, nsObject(ns), "application/json");
    if (created.code() != 201) {
      outcome.put("setup", "namespace " + ns + ": " + created.code() + " " + created.body());
      return outcome;
    }
    for (JsonNode object : c.setup()) {
      String error = createSetup(context, object.deepCopy());
      if (error != null) {
        outcome.put("setup", error);
        return outcome;
      }
    }
    ArrayNode steps = outcome.putArray("steps");
    List<CompletableFuture<JsonNode>> watches = new ArrayList<>();
    List<Integer> watchSlots = new ArrayList<>();
    for (JsonNode step : c.steps()) {
      if (step.has("watch")) {
        watchSlots.add(steps.size());
        steps.addNull();
        watches.add(CompletableFuture.supplyAsync(() -> watch(context, step)));
        sleep(step.path("settle").asLong(1000));
      } else if (step.has("kubectl")) {
        steps.add(kubectl(context, step));
      } else if (step.has("http")) {
        steps.add(http(context, step));
      } else if (step.has("sleep")) {
        sleep(step.path("sleep").asLong());
      } else {
        throw new IllegalArgumentException(c.id() + ": a step needs http, kubectl or watch");
      }
    }
    for (int w = 0; w < watches.size(); w++) {
      JsonNode events;
      try {
        events = watches.get(w).get(60, TimeUnit.SECONDS);
      } catch (Exception e) {
        events = TextNode.valueOf("watch failed: " + e);
      }
      steps.set(watchSlots.get(w), events);
    }
    if (!c.after().isEmpty()) {
      ObjectNode after = outcome.putObject("after");
      for (String path : c.after()) {
        after.set(path, read(context, path));
      }
    }
    return normalizeNamespace(outcome, ns);
  }

  /** Deletes the namespaces the cases ran in (a real API server does so in the background). */
  public void cleanUp() {
    for (String ns : namespaces) {
      send("DELETE", "/api/v1/namespaces/" + ns, null, null, null);
    }
  }

  // ------------------------------------------------------------------------------------------

  private final class Context {
    final String ns;
    final Map<String, String> values = new HashMap<>();

    Context(String ns) {
      this.ns = ns;
    }

    String expand(String text) {
      String out = text;
      for (Map.Entry<String, String> s : SHORTHANDS.entrySet()) {
        out = out.replace(s.getKey(), s.getValue());
      }
      out = out.replace("{ns}", ns);
      out = out.replace("{rv}", values.getOrDefault("rv", "0"));
      Matcher m = PLACEHOLDER.matcher(out);
      StringBuilder b = new StringBuilder();
      while (m.find()) {
        String value = values.get(m.group(1) + ":" + m.group(2));
        m.appendReplacement(
            b, Matcher.quoteReplacement(value == null ? "no-" + m.group(1) : value));
      }
      m.appendTail(b);
      return b.toString();
    }

    JsonNode expand(JsonNode node) {
      if (node == null) {
        return null;
      }
      try {
        String text = expand(JSON.writeValueAsString(node));
        Matcher m = REPEAT.matcher(text);
        StringBuilder b = new StringBuilder();
        while (m.find()) {
          m.appendReplacement(b, m.group(1).repeat(Integer.parseInt(m.group(2))));
        }
        m.appendTail(b);
        return JSON.readTree(b.toString());
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  private String createSetup(Context context, JsonNode object) {
    String kind = object.path("kind").asText();
    String collection = COLLECTIONS.get(kind);
    if (collection == null) {
      throw new IllegalArgumentException("corpus: no collection known for kind " + kind);
    }
    JsonNode status = object.get("status");
    String as = object.path("metadata").path("annotations").path("corpus/as").asText(null);
    if (as != null) {
      ((ObjectNode) object.get("metadata").get("annotations")).remove("corpus/as");
      if (object.path("metadata").path("annotations").isEmpty()) {
        ((ObjectNode) object.get("metadata")).remove("annotations");
      }
    }
    JsonNode body = context.expand(object);
    Answer answer = send("POST", context.expand(collection), as, body, "application/json");
    if (answer.code() != 201) {
      return "setup " + kind + " " + body.path("metadata").path("name") + ": " + answer.code();
    }
    JsonNode stored = answer.json();
    String name = stored.path("metadata").path("name").asText();
    if (status != null && !status.isEmpty()) {
      ObjectNode withStatus = stored.deepCopy();
      withStatus.set("status", context.expand(status));
      Answer written =
          send(
              "PUT",
              context.expand(collection) + "/" + name + "/status",
              as,
              withStatus,
              "application/json");
      if (written.code() != 200) {
        return "setup status of " + kind + " " + name + ": " + written.code();
      }
      stored = written.json();
    }
    context.values.put("uid:" + name, stored.path("metadata").path("uid").asText());
    context.values.put("rv:" + name, stored.path("metadata").path("resourceVersion").asText());
    context.values.put("rv", stored.path("metadata").path("resourceVersion").asText());
    return null;
  }

  private JsonNode http(Context context, JsonNode step) {
    String[] line = step.path("http").asText().split(" ", 2);
    String method = line[0];
    String path = context.expand(line[1]);
    String contentType = contentType(step.path("type").asText(""), method);
    JsonNode body = step.has("body") ? context.expand(step.get("body")) : null;
    String as = step.has("as") ? step.get("as").asText() : null;
    Answer answer = send(method, path, as, body, contentType);
    ObjectNode out = NODES.objectNode();
    out.put("code", answer.code());
    JsonNode json = answer.json();
    if ("Status".equals(json.path("kind").asText()) && answer.code() >= 300) {
      out.put("reason", json.path("reason").asText());
      TreeSet<String> fields = new TreeSet<>();
      for (JsonNode cause : json.path("details").path("causes")) {
        if (cause.hasNonNull("field")) {
          fields.add(cause.get("field").asText());
        }
      }
      if (!fields.isEmpty()) {
        ArrayNode causes = out.putArray("causes");
        fields.forEach(causes::add);
      }
    }
    if (step.path("warnings").asBoolean(false)) {
      ArrayNode warnings = out.putArray("warnings");
      answer.warnings().stream().sorted().forEach(warnings::add);
    }
    String response = step.path("response").asText("");
    if (answer.code() / 100 == 2) {
      switch (response) {
        case "object" -> out.set("object", view(json));
        case "names" -> out.set("names", names(json));
        case "" -> {}
        default -> throw new IllegalArgumentException("response: object or names, not " + response);
      }
    }
    return out;
  }

  private static String contentType(String type, String method) {
    return switch (type) {
      case "json" -> "application/json-patch+json";
      case "merge" -> "application/merge-patch+json";
      case "strategic" -> "application/strategic-merge-patch+json";
      case "apply" -> "application/apply-patch+yaml";
      case "" -> "PATCH".equals(method) ? "application/merge-patch+json" : "application/json";
      default -> type;
    };
  }

  private JsonNode watch(Context context, JsonNode step) {
    String path = context.expand(step.path("watch").asText());
    Answer answer = send("GET", path, null, null, null);
    ArrayNode events = NODES.arrayNode();
    if (answer.code() != 200) {
      ObjectNode out = NODES.objectNode();
      out.put("code", answer.code());
      out.put("reason", answer.json().path("reason").asText());
      return out;
    }
    for (String line : answer.body().split("\n")) {
      if (line.isBlank()) {
        continue;
      }
      try {
        JsonNode event = JSON.readTree(line);
        String type = event.path("type").asText();
        String name = event.path("object").path("metadata").path("name").asText();
        if (!"BOOKMARK".equals(type) && !MADE_BY_CONTROLLERS.contains(name)) {
          events.add(type + " " + name);
        }
      } catch (IOException e) {
        events.add("unreadable: " + line);
      }
    }
    ObjectNode out = NODES.objectNode();
    out.put("code", 200);
    out.set("events", events);
    return out;
  }

  private JsonNode kubectl(Context context, JsonNode step) {
    List<String> command = new ArrayList<>();
    command.add("kubectl");
    command.add("--kubeconfig=" + target.kubeconfig());
    command.add("--cache-dir=" + kubectlCache);
    command.add("--namespace=" + context.ns);
    command.add("-v=6");
    if (step.has("as")) {
      command.add("--as=" + step.get("as").asText());
      command.add("--as-group=system:masters");
    }
    step.path("kubectl").forEach(a -> command.add(context.expand(a.asText())));
    String stdin = null;
    if (step.has("stdin")) {
      try {
        stdin = Corpus.YAML.writeValueAsString(context.expand(step.get("stdin")));
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    ObjectNode out = NODES.objectNode();
    Process process;
    try {
      process = new ProcessBuilder(command).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    } catch (IOException e) {
      throw new IllegalStateException(
          "kubectl is not on the PATH: the corpus runs kubectl commands (install kubectl, for"
              + " example with apt-get install kubectl, or put it on the PATH)",
          e);
    }
    try {
      if (stdin != null) {
        process.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
      }
      process.getOutputStream().close();
      String err = new String(process.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!process.waitFor(120, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        out.put("exit", "timeout");
        return out;
      }
      out.put("exit", process.exitValue());
      ArrayNode requests = out.putArray("requests");
      TreeSet<String> reasons = new TreeSet<>();
      for (String line : err.split("\n")) {
        Matcher m = KUBECTL_REQUEST.matcher(line);
        if (m.find() && isResourcePath(m.group(2))) {
          requests.add(m.group(1) + " " + m.group(2) + " " + m.group(3));
        }
        Matcher r = KUBECTL_REASON.matcher(line);
        if (r.find()) {
          reasons.add(r.group(1));
        }
      }
      if (!reasons.isEmpty()) {
        ArrayNode rs = out.putArray("reasons");
        reasons.forEach(rs::add);
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** A request for resources (not discovery, OpenAPI or version). */
  private static boolean isResourcePath(String path) {
    String p = path.replaceFirst("\\?.*", "");
    String[] parts = p.split("/");
    if (p.startsWith("/api/")) {
      return parts.length >= 4;
    }
    if (p.startsWith("/apis/")) {
      return parts.length >= 5;
    }
    return false;
  }

  private JsonNode read(Context context, String path) {
    Answer answer = send("GET", context.expand(path), null, null, null);
    if (answer.code() != 200) {
      ObjectNode out = NODES.objectNode();
      out.put("code", answer.code());
      return out;
    }
    JsonNode json = answer.json();
    if (json.has("items")) {
      ObjectNode byName = NODES.objectNode();
      TreeMap<String, JsonNode> sorted = new TreeMap<>();
      for (JsonNode item : json.path("items")) {
        if (MADE_BY_CONTROLLERS.contains(item.path("metadata").path("name").asText())) {
          continue;
        }
        JsonNode viewed = view(item);
        sorted.put(viewed.path("metadata").path("name").asText(nameOf(item)), viewed);
      }
      sorted.forEach(byName::set);
      return byName;
    }
    return view(json);
  }

  private static String nameOf(JsonNode object) {
    JsonNode metadata = object.path("metadata");
    String generate = metadata.path("generateName").asText("");
    return generate.isEmpty() ? metadata.path("name").asText() : generate + "*";
  }

  private static ArrayNode names(JsonNode list) {
    TreeSet<String> names = new TreeSet<>();
    list.path("items").forEach(i -> names.add(nameOf(i)));
    names.removeAll(MADE_BY_CONTROLLERS);
    ArrayNode out = NODES.arrayNode();
    names.forEach(out::add);
    return out;
  }

  /** An object as compared: the fields its kind's view names, or all but what a server makes up. */
  JsonNode view(JsonNode object) {
    ObjectNode copy = object.deepCopy();
    if (copy.get("metadata") instanceof ObjectNode metadata) {
      for (String made : List.of("uid", "resourceVersion", "creationTimestamp", "managedFields")) {
        metadata.remove(made);
      }
      if (metadata.has("deletionTimestamp")) {
        metadata.put("deletionTimestamp", "<set>");
      }
      String generate = metadata.path("generateName").asText("");
      if (!generate.isEmpty() && metadata.path("name").asText("").startsWith(generate)) {
        metadata.put("name", generate + "*");
      }
    }
    List<String> paths = corpus.views().get(copy.path("kind").asText());
    if (paths == null) {
      return copy;
    }
    ObjectNode viewed = NODES.objectNode();
    for (String path : paths) {
      JsonNode value = copy;
      for (String part : path.split("\\.")) {
        value = value.path(part);
      }
      if (!value.isMissingNode()) {
        viewed.set(path, value);
      }
    }
    return viewed;
  }

  /**
   * The case's namespace as {@code {ns}}, and every UID (a Job's {@code controller-uid} labels) as
   * {@code <uid>}.
   */
  private static JsonNode normalizeNamespace(JsonNode outcome, String ns) {
    try {
      String text = JSON.writeValueAsString(outcome).replace(ns, "{ns}");
      return JSON.readTree(UUID_VALUE.matcher(text).replaceAll("<uid>"));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static ObjectNode nsObject(String ns) {
    ObjectNode object = NODES.objectNode();
    object.put("apiVersion", "v1");
    object.put("kind", "Namespace");
    object.putObject("metadata").put("name", ns);
    return object;
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  // ------------------------------------------------------------------------------------------

  /** An answer: status code, body, Warning headers. */
  record Answer(int code, String body, List<String> warnings) {
    JsonNode json() {
      try {
        JsonNode node = JSON.readTree(body);
        return node == null ? NODES.objectNode() : node;
      } catch (IOException e) {
        return NODES.objectNode();
      }
    }
  }

  Answer send(String method, String path, String as, JsonNode body, String contentType) {
    String text;
    if (body == null) {
      text = null;
    } else if (body.isTextual()) {
      text = body.asText();
    } else {
      text = body.toString();
    }
    return sendText(method, path, as, text, contentType);
  }

  Answer sendText(String method, String path, String as, String body, String contentType) {
    HttpRequest.Builder request =
        HttpRequest.newBuilder(URI.create(target.url() + path))
            .timeout(Duration.ofSeconds(60))
            .header("Accept", "application/json");
    if (as != null) {
      request.header("Impersonate-User", as);
      request.header("Impersonate-Group", "system:masters");
    }
    if (body != null) {
      request.header("Content-Type", contentType);
      request.method(method, HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
    } else {
      request.method(method, HttpRequest.BodyPublishers.noBody());
    }
    try {
      HttpResponse<String> response =
          target.http().send(request.build(), HttpResponse.BodyHandlers.ofString());
      List<String> warnings = new ArrayList<>();
      for (String w : response.headers().allValues("Warning")) {
        warnings.add(w.replaceFirst("^\\d{3} \\S+ ", ""));
      }
      return new Answer(response.statusCode(), response.body(), warnings);
    } catch (IOException e) {
      return new Answer(-1, "{\"error\":\"" + e + "\"}", List.of());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** Every field of {@code a} and {@code b} that differs, as dotted paths (for reports). */
  static List<String> differences(JsonNode a, JsonNode b, String path) {
    List<String> out = new ArrayList<>();
    if (a == null || b == null || a.getNodeType() != b.getNodeType()) {
      if (!(a == null ? b == null : a.equals(b))) {
        out.add(path + ": " + a + " != " + b);
      }
      return out;
    }
    if (a.isObject()) {
      TreeSet<String> keys = new TreeSet<>();
      a.fieldNames().forEachRemaining(keys::add);
      b.fieldNames().forEachRemaining(keys::add);
      for (String k : keys) {
        out.addAll(differences(a.get(k), b.get(k), path + "/" + k));
      }
    } else if (a.isArray() && a.size() == b.size()) {
      Iterator<JsonNode> ia = a.elements();
      Iterator<JsonNode> ib = b.elements();
      int i = 0;
      while (ia.hasNext()) {
        out.addAll(differences(ia.next(), ib.next(), path + "/" + i++));
      }
    } else if (!a.equals(b)) {
      out.add(path + ": " + a + " != " + b);
    }
    return out;
  }
}
