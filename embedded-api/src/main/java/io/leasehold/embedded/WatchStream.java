package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.mockwebserver.http.WebSocket;
import io.fabric8.mockwebserver.http.WebSocketListener;
import io.leasehold.embedded.ApiResources.Resource;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerResponse;
import java.io.IOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A watch over plain HTTP, as client-go and so kubectl make it ({@code ?watch=true}, one JSON event
 * per line in a chunked response). The store delivers its watch events to a WebSocket; this stream
 * stands in for one and writes the events to the response, starting after the {@code
 * resourceVersion} the client asked from, filtered by the field selector (an object that stops
 * matching is DELETED for the watcher, one that starts matching ADDED), as Tables when the client
 * asked for a Table.
 */
final class WatchStream implements WebSocket {

  private static final Logger LOG = LoggerFactory.getLogger(WatchStream.class);

  private final Vertx vertx;
  private final HttpServerResponse response;
  private final RecordedRequest request;
  private final ObjectMapper mapper;
  private final ApiReads.Selection selector;
  private final long fromVersion;
  private final Tables tables;
  private final Resource resource;
  private final String includeObject;
  private final Set<String> matching = new HashSet<>();
  private final Map<String, Long> delivered = new HashMap<>();
  private WebSocketListener listener;
  private boolean headersSent;
  private boolean closed;

  private WatchStream(
      Vertx vertx,
      HttpServerResponse response,
      RecordedRequest request,
      ObjectMapper mapper,
      ApiReads.Selection selector,
      long fromVersion,
      Tables tables,
      Resource resource,
      String includeObject) {
    this.vertx = vertx;
    this.response = response;
    this.request = request;
    this.mapper = mapper;
    this.selector = selector;
    this.fromVersion = fromVersion;
    this.tables = tables;
    this.resource = resource;
    this.includeObject = includeObject;
  }

  /** Whether a request is a watch made over plain HTTP rather than a WebSocket. */
  static boolean isHttpWatch(RecordedRequest request, boolean upgrade) {
    if (upgrade || !"GET".equals(request.getMethod())) {
      return false;
    }
    return ApiRequest.parse(request.getPath()).map(ApiRequest::isWatch).orElse(false);
  }

  /** Starts streaming the watch {@code request} to {@code response}. */
  static void start(
      Vertx vertx,
      ApiServerDispatcher api,
      ObjectMapper mapper,
      RecordedRequest request,
      HttpServerResponse response) {
    ApiRequest target = ApiRequest.parse(request.getPath()).orElseThrow();
    ApiReads.Selection selector;
    try {
      selector = api.reads().selection(target);
    } catch (IllegalArgumentException e) {
      reply(response, Statuses.response(mapper, 400, "BadRequest", e.getMessage()));
      return;
    }
    if ("true".equals(target.query().get("sendInitialEvents"))) {
      // Watch-list streams need an initial-events bookmark; clients fall back to list and watch.
      reply(
          response,
          Statuses.response(
              mapper,
              400,
              "BadRequest",
              "sendInitialEvents is not supported by the embedded API: list, then watch"));
      return;
    }
    Optional<Resource> resource =
        api.resources().find(target.group(), target.version(), target.plural());
    boolean table = Tables.wanted(request.getHeader("Accept")) && resource.isPresent();
    long from = parseVersion(target.query().get("resourceVersion"));
    WatchStream stream =
        new WatchStream(
            vertx,
            response,
            request,
            mapper,
            selector,
            from,
            table ? api.reads().tables() : null,
            resource.orElse(null),
            target.query().getOrDefault("includeObject", "Metadata"));
    // The store misreads an encoded field selector as a name, and ignores set-based label
    // selectors; the stream filters instead.
    String storePath = ApiReads.storePath(request.getPath());
    MockResponse opened =
        api.dispatch(
            new RecordedRequest(
                request.getHttpVersion(),
                request.method(),
                storePath,
                request.getHeaders(),
                request.getBody()));
    if (opened.getWebSocketListener() == null) {
      reply(response, opened);
      return;
    }
    response.setChunked(true);
    response.setStatusCode(200);
    response.putHeader("Content-Type", table ? Tables.CONTENT_TYPE : "application/json");
    response.putHeader("Cache-Control", "no-cache, private");
    response.writeHead();
    stream.listener = opened.getWebSocketListener();
    response.closeHandler(v -> stream.release());
    String timeout = target.query().get("timeoutSeconds");
    if (timeout != null) {
      try {
        long seconds = Long.parseLong(timeout);
        if (seconds > 0) {
          vertx.setTimer(seconds * 1000, id -> stream.close(1000, "timeout"));
        }
      } catch (NumberFormatException e) {
        // An unreadable timeout leaves the watch open, as no timeout would.
      }
    }
    stream.listener.onOpen(stream, opened);
    stream.replayDeletion(api, target, resource.orElse(null));
  }

  /**
   * A watch from a listed version, on one object by name, whose object is gone: it was deleted
   * between the client's list and this watch, and the client is told, as an API server replays the
   * events after the version it was given.
   */
  private void replayDeletion(ApiServerDispatcher api, ApiRequest target, Resource resource) {
    String name = null;
    for (FieldSelector.Requirement r : selector.fields().requirements()) {
      if (r.equal() && "metadata.name".equals(r.field())) {
        name = r.value();
      }
    }
    if (fromVersion <= 0 || name == null || resource == null || target.name() != null) {
      return;
    }
    String path = target.collectionPath() + "/" + name;
    if (!api.deletedLately(path) || api.exists(path)) {
      return;
    }
    ObjectNode object = mapper.createObjectNode();
    object.put("apiVersion", target.apiVersion());
    object.put("kind", resource.kind());
    ObjectNode metadata = object.putObject("metadata");
    metadata.put("name", name);
    if (target.namespace() != null) {
      metadata.put("namespace", target.namespace());
    }
    ObjectNode event = mapper.createObjectNode();
    event.put("type", "DELETED");
    event.set("object", object);
    synchronized (this) {
      matching.add("");
    }
    send(event.toString());
  }

  private static long parseVersion(String version) {
    if (version == null || version.isEmpty()) {
      return 0;
    }
    try {
      return Long.parseLong(version);
    } catch (NumberFormatException e) {
      return 0;
    }
  }

  private static void reply(HttpServerResponse response, MockResponse answer) {
    response.setStatusCode(answer.code());
    answer.getHeaders().toMultimap().forEach((k, v) -> response.headers().add(k, v));
    if (answer.getBody() != null && answer.getBody().size() > 0) {
      response.end(Buffer.buffer(answer.getBody().getBytes()));
    } else {
      response.end();
    }
  }

  @Override
  public RecordedRequest request() {
    return request;
  }

  @Override
  public boolean send(byte[] bytes) {
    return send(new String(bytes, java.nio.charset.StandardCharsets.UTF_8));
  }

  /** One event from the store, in its watch-event JSON. */
  @Override
  public synchronized boolean send(String text) {
    if (closed) {
      return false;
    }
    JsonNode event;
    try {
      event = mapper.readTree(text);
    } catch (IOException e) {
      return false;
    }
    String type = event.path("type").asText();
    JsonNode object = event.path("object");
    String uid = object.path("metadata").path("uid").asText("");
    long version = parseVersion(object.path("metadata").path("resourceVersion").asText(""));
    if ("DELETED".equals(type)) {
      delivered.remove(uid);
      if (!selector.isEmpty() && !matching.remove(uid)) {
        return true;
      }
    } else {
      boolean matches = selector.isEmpty() || selector.matches(object);
      if (version <= fromVersion || version <= delivered.getOrDefault(uid, 0L)) {
        // Already seen by the client: in the list it watches from, or sent before.
        if (matches && !selector.isEmpty()) {
          matching.add(uid);
        }
        return true;
      }
      delivered.put(uid, version);
      if (!selector.isEmpty()) {
        if (matches) {
          type = matching.add(uid) ? "ADDED" : type;
        } else if (matching.remove(uid)) {
          // It no longer matches: for this watcher it is gone.
          type = "DELETED";
        } else {
          return true;
        }
      }
    }
    ObjectNode out = mapper.createObjectNode();
    out.put("type", type);
    if (tables != null) {
      out.set("object", tables.table(resource, List.of(object), "", includeObject, !headersSent));
      headersSent = true;
    } else {
      out.set("object", object);
    }
    response.write(Buffer.buffer(out.toString() + "\n"));
    return true;
  }

  @Override
  public synchronized boolean close(int code, String reason) {
    if (!closed) {
      closed = true;
      try {
        response.end();
      } catch (IllegalStateException e) {
        // The client went away first.
      }
      release();
    }
    return true;
  }

  /** Stops the store's delivery to this stream (off the event loop: the store waits for it). */
  private void release() {
    synchronized (this) {
      closed = true;
    }
    WebSocketListener l = listener;
    if (l != null) {
      listener = null;
      vertx.executeBlocking(
          () -> {
            try {
              l.onClosed(this, 1000, "watch ended");
            } catch (RuntimeException e) {
              LOG.debug("closing a watch: {}", e.toString());
            }
            return null;
          },
          false);
    }
  }
}
