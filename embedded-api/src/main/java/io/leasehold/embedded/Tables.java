package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.jayway.jsonpath.Configuration;
import com.jayway.jsonpath.JsonPath;
import com.jayway.jsonpath.Option;
import com.jayway.jsonpath.spi.json.JacksonJsonNodeJsonProvider;
import com.jayway.jsonpath.spi.mapper.JacksonMappingProvider;
import io.leasehold.embedded.ApiResources.Resource;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

/**
 * Server-side printing: the {@code meta.k8s.io/v1} {@code Table} that {@code kubectl get} asks for
 * ({@code Accept: application/json;as=Table;g=meta.k8s.io;v=v1}). Custom resources get their CRD's
 * {@code additionalPrinterColumns}; built-in resources get the columns a Kubernetes API server
 * prints for them.
 */
final class Tables {

  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
  private static final Configuration JSON_PATH =
      Configuration.builder()
          .jsonProvider(new JacksonJsonNodeJsonProvider())
          .mappingProvider(new JacksonMappingProvider())
          .options(Option.SUPPRESS_EXCEPTIONS, Option.ALWAYS_RETURN_LIST)
          .build();
  private static final Map<String, JsonPath> COMPILED = new ConcurrentHashMap<>();

  /** One column: its definition and how to compute its cell from an object. */
  record Column(
      String name, String type, String format, int priority, Function<JsonNode, JsonNode> cell) {

    Column(String name, String type, int priority, Function<JsonNode, JsonNode> cell) {
      this(name, type, "", priority, cell);
    }
  }

  private final ObjectMapper mapper;

  Tables(ObjectMapper mapper) {
    this.mapper = mapper;
  }

  /** Whether an Accept header asks for a Table. */
  static boolean wanted(String accept) {
    return accept != null
        && accept.contains("as=Table")
        && accept.contains("g=meta.k8s.io")
        && (accept.contains("v=v1;") || accept.contains("v=v1,") || accept.endsWith("v=v1"));
  }

  /** The content type of a Table answer. */
  static final String CONTENT_TYPE = "application/json;as=Table;g=meta.k8s.io;v=v1";

  /**
   * A Table of {@code items} (a list's items, or one object).
   *
   * @param includeObject the request's {@code includeObject}: None, Metadata (default) or Object
   * @param headers whether to include the column definitions (left out after a watch's first event)
   */
  ObjectNode table(
      Resource resource,
      List<JsonNode> items,
      String resourceVersion,
      String includeObject,
      boolean headers) {
    List<Column> columns = columns(resource);
    ObjectNode table = mapper.createObjectNode();
    table.put("kind", "Table");
    table.put("apiVersion", "meta.k8s.io/v1");
    ObjectNode metadata = table.putObject("metadata");
    if (resourceVersion != null && !resourceVersion.isEmpty()) {
      metadata.put("resourceVersion", resourceVersion);
    }
    ArrayNode definitions = table.putArray("columnDefinitions");
    if (headers) {
      for (Column c : columns) {
        ObjectNode d = definitions.addObject();
        d.put("name", c.name());
        d.put("type", c.type());
        d.put("format", c.format());
        d.put("description", "");
        d.put("priority", c.priority());
      }
    }
    ArrayNode rows = table.putArray("rows");
    for (JsonNode item : items) {
      ObjectNode row = rows.addObject();
      ArrayNode cells = row.putArray("cells");
      for (Column c : columns) {
        JsonNode value = c.cell().apply(item);
        cells.add(value == null ? NODES.nullNode() : value);
      }
      switch (includeObject == null ? "Metadata" : includeObject) {
        case "None" -> {}
        case "Object" -> row.set("object", item);
        default -> {
          ObjectNode partial = row.putObject("object");
          partial.put("kind", "PartialObjectMetadata");
          partial.put("apiVersion", "meta.k8s.io/v1");
          partial.set("metadata", item.path("metadata").deepCopy());
        }
      }
    }
    return table;
  }

  List<Column> columns(Resource resource) {
    if (resource.isCustom()) {
      return customColumns(resource);
    }
    List<Column> columns = new ArrayList<>();
    if (!"events".equals(resource.plural())) {
      // Events lead with when they were last seen; their name is a wide column.
      columns.add(nameColumn());
    }
    columns.addAll(builtInColumns(resource));
    return columns;
  }

  private static Column nameColumn() {
    return new Column("Name", "string", "name", 0, o -> text(o.path("metadata").path("name")));
  }

  private static Column age() {
    return new Column(
        "Age", "string", 0, o -> text(age(o.path("metadata").path("creationTimestamp"))));
  }

  private static Column createdAt() {
    return new Column(
        "Created At", "date", 0, o -> o.path("metadata").path("creationTimestamp").deepCopy());
  }

  private List<Column> customColumns(Resource resource) {
    List<Column> columns = new ArrayList<>();
    columns.add(nameColumn());
    JsonNode printerColumns = null;
    for (JsonNode v : resource.crd().path("spec").path("versions")) {
      if (v.path("name").asText().equals(resource.version())) {
        printerColumns = v.path("additionalPrinterColumns");
      }
    }
    if (printerColumns == null || printerColumns.isEmpty()) {
      columns.add(age());
      return columns;
    }
    for (JsonNode c : printerColumns) {
      String type = c.path("type").asText("string");
      String path = c.path("jsonPath").asText();
      columns.add(
          new Column(
              c.path("name").asText(),
              type,
              c.path("format").asText(""),
              c.path("priority").asInt(0),
              o -> printerCell(type, first(o, path))));
    }
    return columns;
  }

  /** The first value a printer column's JSONPath finds in an object, or null. */
  static JsonNode first(JsonNode object, String kubernetesPath) {
    String path = kubernetesPath.trim();
    if (path.startsWith("{") && path.endsWith("}")) {
      path = path.substring(1, path.length() - 1);
    }
    String jsonPath = path.startsWith("$") ? path : "$" + path;
    JsonPath compiled;
    try {
      compiled = COMPILED.computeIfAbsent(jsonPath, JsonPath::compile);
    } catch (RuntimeException e) {
      return null;
    }
    JsonNode found = compiled.read(object, JSON_PATH);
    if (found == null || !found.isArray() || found.isEmpty()) {
      return null;
    }
    JsonNode value = found.get(0);
    return value == null || value.isNull() ? null : value;
  }

  private static JsonNode printerCell(String type, JsonNode value) {
    if (value == null) {
      return null;
    }
    return switch (type) {
      case "integer" -> value.isNumber() ? NODES.numberNode(value.longValue()) : null;
      case "number" -> value.isNumber() ? NODES.numberNode(value.doubleValue()) : null;
      case "boolean" -> value.isBoolean() ? value : null;
      case "date" -> text(age(value));
      default ->
          value.isValueNode() ? NODES.textNode(value.asText()) : NODES.textNode(value.toString());
    };
  }

  private static List<Column> builtInColumns(Resource resource) {
    String key = resource.group() + "/" + resource.plural();
    return switch (key) {
      case "/namespaces" ->
          List.of(
              new Column(
                  "Status", "string", 0, o -> text(o.path("status").path("phase"), "Active")),
              age());
      case "/configmaps" ->
          List.of(
              new Column(
                  "Data",
                  "integer",
                  0,
                  o -> NODES.numberNode(o.path("data").size() + o.path("binaryData").size())),
              age());
      case "/secrets" ->
          List.of(
              new Column("Type", "string", 0, o -> text(o.path("type"), "Opaque")),
              new Column("Data", "integer", 0, o -> NODES.numberNode(o.path("data").size())),
              age());
      case "/serviceaccounts" ->
          List.of(
              new Column("Secrets", "integer", 0, o -> NODES.numberNode(o.path("secrets").size())),
              age());
      case "/pods" -> podColumns();
      case "/services" ->
          List.of(
              new Column("Type", "string", 0, o -> text(o.path("spec").path("type"), "ClusterIP")),
              new Column(
                  "Cluster-IP", "string", 0, o -> text(o.path("spec").path("clusterIP"), "<none>")),
              new Column("External-IP", "string", 0, o -> text("<none>")),
              new Column("Port(s)", "string", 0, Tables::servicePorts),
              age());
      case "/events" -> eventColumns(false);
      case "events.k8s.io/events" -> eventColumns(true);
      case "batch/jobs" -> jobColumns();
      case "batch/cronjobs" -> cronJobColumns();
      case "coordination.k8s.io/leases" ->
          List.of(
              new Column("Holder", "string", 0, o -> text(o.path("spec").path("holderIdentity"))),
              age());
      case "rbac.authorization.k8s.io/roles",
          "rbac.authorization.k8s.io/clusterroles",
          "apiextensions.k8s.io/customresourcedefinitions" ->
          List.of(createdAt());
      case "rbac.authorization.k8s.io/rolebindings",
          "rbac.authorization.k8s.io/clusterrolebindings" ->
          List.of(
              new Column(
                  "Role",
                  "string",
                  0,
                  o ->
                      text(
                          o.path("roleRef").path("kind").asText()
                              + "/"
                              + o.path("roleRef").path("name").asText())),
              age());
      default -> List.of(age());
    };
  }

  private static List<Column> podColumns() {
    return List.of(
        new Column(
            "Ready",
            "string",
            0,
            o -> {
              int total = o.path("spec").path("containers").size();
              int ready = 0;
              for (JsonNode c : o.path("status").path("containerStatuses")) {
                if (c.path("ready").asBoolean(false)) {
                  ready++;
                }
              }
              return text(ready + "/" + total);
            }),
        new Column(
            "Status",
            "string",
            0,
            o ->
                o.path("metadata").hasNonNull("deletionTimestamp")
                    ? text("Terminating")
                    : text(
                        o.path("status")
                            .path("reason")
                            .asText(o.path("status").path("phase").asText("Pending")))),
        new Column(
            "Restarts",
            "string",
            0,
            o -> {
              long restarts = 0;
              for (JsonNode c : o.path("status").path("containerStatuses")) {
                restarts += c.path("restartCount").asLong(0);
              }
              return text(Long.toString(restarts));
            }),
        age(),
        new Column("IP", "string", 1, o -> text(o.path("status").path("podIP"), "<none>")),
        new Column("Node", "string", 1, o -> text(o.path("spec").path("nodeName"), "<none>")));
  }

  private static List<Column> eventColumns(boolean eventsApi) {
    String regarding = eventsApi ? "regarding" : "involvedObject";
    return List.of(
        new Column(
            "Last Seen",
            "string",
            0,
            o -> {
              JsonNode last = o.path(eventsApi ? "deprecatedLastTimestamp" : "lastTimestamp");
              if (last.isMissingNode() || last.isNull() || last.asText().isEmpty()) {
                last = o.path("eventTime");
              }
              if (last.isMissingNode() || last.isNull() || last.asText().isEmpty()) {
                last = o.path(eventsApi ? "deprecatedFirstTimestamp" : "firstTimestamp");
              }
              if (last.isMissingNode() || last.isNull() || last.asText().isEmpty()) {
                last = o.path("metadata").path("creationTimestamp");
              }
              return text(age(last));
            }),
        new Column("Type", "string", 0, o -> text(o.path("type"))),
        new Column("Reason", "string", 0, o -> text(o.path("reason"))),
        new Column(
            "Object",
            "string",
            0,
            o -> {
              JsonNode ref = o.path(regarding);
              return text(
                  ref.path("kind").asText().toLowerCase(Locale.ROOT)
                      + "/"
                      + ref.path("name").asText());
            }),
        new Column("Message", "string", 0, o -> text(o.path(eventsApi ? "note" : "message"))),
        new Column(
            "Source",
            "string",
            1,
            o ->
                text(
                    eventsApi
                        ? o.path("reportingController").asText()
                        : o.path("source")
                            .path("component")
                            .asText(o.path("reportingComponent").asText()))),
        new Column(
            "Count",
            "integer",
            1,
            o -> NODES.numberNode(o.path(eventsApi ? "deprecatedCount" : "count").asLong(1))),
        new Column("Name", "string", 1, o -> text(o.path("metadata").path("name"))));
  }

  private static List<Column> jobColumns() {
    return List.of(
        new Column("Status", "string", 0, Tables::jobStatus),
        new Column(
            "Completions",
            "string",
            0,
            o ->
                text(
                    o.path("status").path("succeeded").asLong(0)
                        + "/"
                        + o.path("spec").path("completions").asLong(1))),
        new Column("Duration", "string", 0, Tables::jobDuration),
        age(),
        new Column("Containers", "string", 1, o -> containers(o.path("spec"), "name")),
        new Column("Images", "string", 1, o -> containers(o.path("spec"), "image")));
  }

  private static JsonNode jobStatus(JsonNode job) {
    if (job.path("metadata").hasNonNull("deletionTimestamp")) {
      return text("Terminating");
    }
    for (String type :
        List.of("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended")) {
      for (JsonNode c : job.path("status").path("conditions")) {
        if (type.equals(c.path("type").asText()) && "True".equals(c.path("status").asText())) {
          return text(type);
        }
      }
    }
    return text(job.path("spec").path("suspend").asBoolean(false) ? "Suspended" : "Running");
  }

  private static JsonNode jobDuration(JsonNode job) {
    JsonNode start = job.path("status").path("startTime");
    if (start.isMissingNode() || start.isNull()) {
      return text("");
    }
    JsonNode end = job.path("status").path("completionTime");
    try {
      Instant from = Instant.parse(start.asText());
      Instant to = end.isTextual() ? Instant.parse(end.asText()) : Instant.now();
      return text(humanDuration(Duration.between(from, to)));
    } catch (DateTimeParseException e) {
      return text("");
    }
  }

  private static List<Column> cronJobColumns() {
    return List.of(
        new Column("Schedule", "string", 0, o -> text(o.path("spec").path("schedule"))),
        new Column("Timezone", "string", 0, o -> text(o.path("spec").path("timeZone"), "<none>")),
        new Column(
            "Suspend",
            "boolean",
            0,
            o -> NODES.booleanNode(o.path("spec").path("suspend").asBoolean(false))),
        new Column(
            "Active", "integer", 0, o -> NODES.numberNode(o.path("status").path("active").size())),
        new Column(
            "Last Schedule",
            "string",
            0,
            o -> {
              JsonNode last = o.path("status").path("lastScheduleTime");
              return text(last.isTextual() ? age(last) : "<none>");
            }),
        age(),
        new Column(
            "Containers",
            "string",
            1,
            o -> containers(o.path("spec").path("jobTemplate").path("spec"), "name")),
        new Column(
            "Images",
            "string",
            1,
            o -> containers(o.path("spec").path("jobTemplate").path("spec"), "image")));
  }

  private static JsonNode containers(JsonNode jobSpec, String field) {
    List<String> values = new ArrayList<>();
    jobSpec
        .path("template")
        .path("spec")
        .path("containers")
        .forEach(c -> values.add(c.path(field).asText()));
    return text(String.join(",", values));
  }

  private static JsonNode servicePorts(JsonNode service) {
    List<String> ports = new ArrayList<>();
    for (JsonNode p : service.path("spec").path("ports")) {
      ports.add(p.path("port").asText() + "/" + p.path("protocol").asText("TCP"));
    }
    return text(ports.isEmpty() ? "<none>" : String.join(",", ports));
  }

  private static JsonNode text(JsonNode value) {
    return text(value, "");
  }

  private static JsonNode text(JsonNode value, String otherwise) {
    return NODES.textNode(
        value == null || value.isMissingNode() || value.isNull() || value.asText().isEmpty()
            ? otherwise
            : value.asText());
  }

  private static JsonNode text(String value) {
    return NODES.textNode(value);
  }

  /**
   * The age of a timestamp as kubectl shows it ({@code 5m}, {@code 3h12m}), or {@code <unknown>}.
   */
  static String age(JsonNode timestamp) {
    if (timestamp == null || !timestamp.isTextual() || timestamp.asText().isEmpty()) {
      return "<unknown>";
    }
    try {
      return humanDuration(Duration.between(Instant.parse(timestamp.asText()), Instant.now()));
    } catch (DateTimeParseException e) {
      return "<unknown>";
    }
  }

  /** A duration the way Kubernetes prints ages: two significant units at most. */
  static String humanDuration(Duration d) {
    long seconds = d.getSeconds();
    if (seconds < -1) {
      return "<invalid>";
    }
    if (seconds < 0) {
      return "0s";
    }
    if (seconds < 120) {
      return seconds + "s";
    }
    long minutes = seconds / 60;
    if (minutes < 10) {
      long s = seconds % 60;
      return s == 0 ? minutes + "m" : minutes + "m" + s + "s";
    }
    if (minutes < 180) {
      return minutes + "m";
    }
    long hours = minutes / 60;
    if (hours < 8) {
      long m = minutes % 60;
      return m == 0 ? hours + "h" : hours + "h" + m + "m";
    }
    if (hours < 48) {
      return hours + "h";
    }
    long days = hours / 24;
    if (hours < 24 * 8) {
      long h = hours % 24;
      return h == 0 ? days + "d" : days + "d" + h + "h";
    }
    if (days < 365 * 2) {
      return days + "d";
    }
    long years = days / 365;
    if (days < 365 * 8) {
      long dy = days % 365;
      return dy == 0 ? years + "y" : years + "y" + dy + "d";
    }
    return years + "y";
  }
}
