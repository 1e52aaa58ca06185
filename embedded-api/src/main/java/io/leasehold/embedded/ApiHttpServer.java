package io.leasehold.embedded;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.mockwebserver.MockWebServer;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Headers;
import io.fabric8.mockwebserver.http.HttpUrl;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.mockwebserver.vertx.ServerWebSocketHandler;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import java.lang.reflect.Field;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The embedded API's HTTP server: the mock server's, plus the watches client-go (and so kubectl)
 * makes over plain HTTP, which the mock server can only serve over WebSockets. Requests are
 * recorded as the mock server records them, so tests that read them back keep working.
 */
final class ApiHttpServer extends MockWebServer {

  private static final Logger LOG = LoggerFactory.getLogger(ApiHttpServer.class);
  private static final List<String> WEBSOCKET_PROTOCOLS =
      List.of("v1.channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io");

  private final ApiServerDispatcher api;
  private final ObjectMapper mapper;
  private final Vertx vertx;
  private final BlockingQueue<RecordedRequest> requests = new LinkedBlockingQueue<>();
  private final AtomicInteger requestCount = new AtomicInteger();
  private HttpServer server;
  private String hostName;
  private int port;

  ApiHttpServer(ApiServerDispatcher api, ObjectMapper mapper) {
    this.api = api;
    this.mapper = mapper;
    this.vertx = inheritedVertx();
  }

  /**
   * The Vert.x instance the mock server creates in its constructor; it is released only by its own
   * server's shutdown, which this server replaces, so this server runs on it.
   */
  private Vertx inheritedVertx() {
    try {
      Field field = MockWebServer.class.getDeclaredField("vertx");
      field.setAccessible(true);
      return (Vertx) field.get(this);
    } catch (ReflectiveOperationException | RuntimeException e) {
      LOG.debug("mock server's Vert.x not reachable ({}); starting one", e.toString());
      return Vertx.vertx();
    }
  }

  @Override
  public synchronized void start(InetAddress address, int requestedPort) {
    if (server != null) {
      throw new IllegalStateException("start() already called");
    }
    hostName = address.getHostName().equals("127.0.0.1") ? "localhost" : address.getHostName();
    HttpServerOptions options =
        new HttpServerOptions()
            .setHost(address.getHostAddress())
            .setPort(requestedPort)
            .setWebSocketSubProtocols(WEBSOCKET_PROTOCOLS)
            .setHandle100ContinueAutomatically(true);
    HttpServer created = vertx.createHttpServer(options).requestHandler(this::handle);
    server = await(created.listen(), "cannot listen on " + address + ":" + requestedPort);
    port = server.actualPort();
  }

  private void handle(HttpServerRequest request) {
    boolean upgrade = "websocket".equalsIgnoreCase(request.getHeader("Upgrade"));
    if (upgrade) {
      // A WebSocket upgrade must not read the body first.
      serve(request, record(request, null), true);
      return;
    }
    request
        .body()
        .onSuccess(body -> serve(request, record(request, body), false))
        .onFailure(e -> fail(request.response(), e));
  }

  private RecordedRequest record(HttpServerRequest request, Buffer body) {
    RecordedRequest recorded =
        new RecordedRequest(
            request.version().alpnName().toUpperCase(Locale.ROOT),
            HttpMethod.fromVertx(request.method()),
            request.uri(),
            Headers.builder().addAll(request.headers()).build(),
            new io.fabric8.mockwebserver.http.Buffer(
                body == null || body.length() == 0 ? null : body.getBytes()));
    requestCount.incrementAndGet();
    requests.add(recorded);
    return recorded;
  }

  private void serve(HttpServerRequest request, RecordedRequest recorded, boolean upgrade) {
    HttpServerResponse response = request.response();
    try {
      if (WatchStream.isHttpWatch(recorded, upgrade)) {
        WatchStream.start(vertx, api, mapper, recorded, response);
        return;
      }
      MockResponse answer = api.dispatch(recorded);
      if (answer.getWebSocketListener() != null) {
        request
            .toWebSocket()
            .onSuccess(new ServerWebSocketHandler(recorded, answer))
            .onFailure(e -> fail(response, e));
        return;
      }
      response.setStatusCode(answer.code());
      answer.getHeaders().toMultimap().forEach((k, v) -> response.headers().add(k, v));
      if (answer.getBody() != null && answer.getBody().size() > 0) {
        if (!response.headers().contains("Content-Type")) {
          // Every body here is JSON; a client that asked for protobuf first must be told so.
          response.putHeader("Content-Type", "application/json");
        }
        response.end(Buffer.buffer(answer.getBody().getBytes()));
      } else {
        response.end();
      }
    } catch (RuntimeException e) {
      LOG.error("embedded API failed on {} {}", recorded.getMethod(), recorded.getPath(), e);
      fail(response, e);
    }
  }

  private static void fail(HttpServerResponse response, Throwable e) {
    if (!response.headWritten()) {
      response.setStatusCode(500).end(String.valueOf(e.getMessage()));
    }
  }

  @Override
  public synchronized void shutdown() {
    if (server == null) {
      return;
    }
    api.shutdown();
    try {
      await(server.close(), "cannot stop the embedded API");
    } finally {
      await(vertx.close(), "cannot stop the embedded API's Vert.x");
    }
  }

  private static <T> T await(Future<T> future, String message) {
    try {
      return future.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(message, e);
    } catch (Exception e) {
      throw new IllegalStateException(message + ": " + e.getMessage(), e);
    }
  }

  @Override
  public int getPort() {
    return port;
  }

  @Override
  public String getHostName() {
    return hostName;
  }

  @Override
  public Proxy toProxyAddress() {
    return new Proxy(Proxy.Type.HTTP, new InetSocketAddress(hostName, port));
  }

  @Override
  public HttpUrl url(String path) {
    String p = path.startsWith("/") ? path.substring(1) : path;
    return HttpUrl.parse("http://" + hostName + ":" + port + "/" + p);
  }

  @Override
  public RecordedRequest takeRequest() throws InterruptedException {
    return requests.take();
  }

  @Override
  public RecordedRequest takeRequest(long timeout, TimeUnit unit) throws InterruptedException {
    return requests.poll(timeout, unit);
  }

  @Override
  public int getRequestCount() {
    return requestCount.get();
  }

  @Override
  public String toString() {
    return "ApiHttpServer[" + port + "]";
  }
}
