package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.IOException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * LOCK and GET latency of 16 busy clients, alone and with 100 idle or slow connections open on the
 * same backend: slow clients must not starve the others.
 */
final class IdleConnectionsBenchmark implements Benchmark {

  private static final int ACTIVE = 16;
  private static final int IDLE = 100;
  private static final int CYCLES = 40;

  @Override
  public String id() {
    return "idle";
  }

  @Override
  public String title() {
    return "Busy clients beside idle and slow connections";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %d HTTP clients, each on its own state, run LOCK, GET (a small state), UNLOCK in a loop
        (%d cycles each per side, in two rounds: A, B, B, A, so that both sides see the API as
        it fills up) against the backend on the embedded API. Side A runs them alone; side B
        runs them while %d other connections are open: a third connected and silent, a third
        stopped in the middle of their request headers, a third authenticated POSTs whose state
        body trickles in at one byte every 5 s (each is reopened if the backend closes it). The
        target is LOCK and GET p99 with the idle connections at most 2x the p99 without them.
        What limits the figures: the in-memory API, which serves one request at a time.
        """
        .formatted(ACTIVE, CYCLES, IDLE);
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    try (OperatorHarness h = OperatorHarness.start()) {
      String base = h.startBackend(64L * 1024 * 1024);
      HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
      for (int i = 0; i <= ACTIVE; i++) {
        TerraformState s = new TerraformState();
        s.getMetadata().setName(name(i));
        s.getMetadata().setNamespace(NAMESPACE);
        h.client().resource(s).create();
      }
      Thread.sleep(2000);
      for (int i = 0; i < ACTIVE; i++) {
        int status =
            send(
                http,
                "POST",
                base + NAMESPACE + "/" + name(i),
                TerraformStates.stateJson(1, "l", 3));
        if (status != 200) {
          throw new IllegalStateException("writing the state answered " + status);
        }
      }
      // Warm-up.
      measure(http, base, CYCLES / 4);
      // A, B, B, A: the in-memory API slows as it stores more objects (Events, Lease versions),
      // so each side gets an early and a late round.
      Samples alone = measure(http, base, CYCLES / 2);
      Samples crowded = crowded(http, base, CYCLES / 2);
      crowded = crowded.and(crowded(http, base, CYCLES / 2));
      alone = alone.and(measure(http, base, CYCLES / 2));
      List<Figure> figures = new ArrayList<>();
      double lockA = Bench.percentile(alone.lock(), 99);
      double lockB = Bench.percentile(crowded.lock(), 99);
      double getA = Bench.percentile(alone.get(), 99);
      double getB = Bench.percentile(crowded.get(), 99);
      figures.add(Figure.of("A alone: LOCK p50", Bench.percentile(alone.lock(), 50), "ms"));
      figures.add(Figure.of("A alone: LOCK p99", lockA, "ms"));
      figures.add(Figure.of("A alone: GET p50", Bench.percentile(alone.get(), 50), "ms"));
      figures.add(Figure.of("A alone: GET p99", getA, "ms"));
      figures.add(
          Figure.of(
              "B with " + IDLE + " idle: LOCK p50", Bench.percentile(crowded.lock(), 50), "ms"));
      figures.add(Figure.of("B with " + IDLE + " idle: LOCK p99", lockB, "ms"));
      figures.add(
          Figure.of(
              "B with " + IDLE + " idle: GET p50", Bench.percentile(crowded.get(), 50), "ms"));
      figures.add(Figure.of("B with " + IDLE + " idle: GET p99", getB, "ms"));
      figures.add(Figure.target("LOCK p99 B / A", lockB / lockA, "x", 2.0));
      figures.add(Figure.target("GET p99 B / A", getB / getA, "x", 2.0));
      return figures;
    }
  }

  private static String name(int i) {
    return i == ACTIVE ? "idle-target" : "busy-" + (char) ('a' + i);
  }

  /** Latencies in milliseconds, sorted. */
  private record Samples(List<Double> lock, List<Double> get) {
    Samples and(Samples more) {
      List<Double> l = new ArrayList<>(lock);
      l.addAll(more.lock());
      l.sort(Double::compare);
      List<Double> g = new ArrayList<>(get);
      g.addAll(more.get());
      g.sort(Double::compare);
      return new Samples(l, g);
    }
  }

  /** {@link #measure} with the idle connections open. */
  private static Samples crowded(HttpClient http, String base, int cycles) throws Exception {
    try (IdleConnections idle = new IdleConnections(URI.create(base), IDLE)) {
      Thread.sleep(1000);
      Samples samples = measure(http, base, cycles);
      if (idle.open() < IDLE * 9 / 10) {
        throw new IllegalStateException(
            "only " + idle.open() + " of " + IDLE + " idle connections stayed open");
      }
      return samples;
    }
  }

  private static Samples measure(HttpClient http, String base, int cycles) throws Exception {
    List<Double> lock = Collections.synchronizedList(new ArrayList<>());
    List<Double> get = Collections.synchronizedList(new ArrayList<>());
    ExecutorService pool = Executors.newFixedThreadPool(ACTIVE);
    List<Future<?>> done = new ArrayList<>();
    for (int c = 0; c < ACTIVE; c++) {
      String state = base + NAMESPACE + "/" + name(c);
      int client = c;
      done.add(
          pool.submit(
              () -> {
                for (int n = 0; n < cycles; n++) {
                  String info = LockCycles.lockInfo("b" + client + "-" + n);
                  long t0 = System.nanoTime();
                  expect(send(http, "LOCK", state + "/lock", info), "LOCK");
                  long t1 = System.nanoTime();
                  expect(send(http, "GET", state, null), "GET");
                  long t2 = System.nanoTime();
                  expect(send(http, "UNLOCK", state + "/lock", info), "UNLOCK");
                  lock.add((t1 - t0) / 1e6);
                  get.add((t2 - t1) / 1e6);
                }
                return null;
              }));
    }
    for (Future<?> f : done) {
      f.get();
    }
    pool.shutdown();
    List<Double> l = new ArrayList<>(lock);
    List<Double> g = new ArrayList<>(get);
    l.sort(Double::compare);
    g.sort(Double::compare);
    return new Samples(l, g);
  }

  private static void expect(int status, String what) {
    if (status != 200) {
      throw new IllegalStateException(what + " answered " + status);
    }
  }

  private static int send(HttpClient http, String method, String url, String body) {
    try {
      return http.send(
              HttpRequest.newBuilder(URI.create(url))
                  .timeout(Duration.ofSeconds(120))
                  .method(
                      method,
                      body == null
                          ? HttpRequest.BodyPublishers.noBody()
                          : HttpRequest.BodyPublishers.ofString(body))
                  .build(),
              HttpResponse.BodyHandlers.discarding())
          .statusCode();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /** Connections that hold a place on the backend and do (almost) nothing with it. */
  private static final class IdleConnections implements AutoCloseable {
    private final URI base;
    private final Socket[] sockets;
    private final AtomicBoolean stop = new AtomicBoolean();
    private final Thread keeper;

    IdleConnections(URI base, int count) throws IOException {
      this.base = base;
      this.sockets = new Socket[count];
      for (int i = 0; i < count; i++) {
        sockets[i] = open(i);
      }
      keeper = new Thread(this::keep, "idle-connections");
      keeper.setDaemon(true);
      keeper.start();
    }

    private Socket open(int i) throws IOException {
      Socket s = new Socket(base.getHost(), base.getPort());
      String target = base.getPath() + NAMESPACE + "/idle-target";
      switch (i % 3) {
        case 0 -> {
          // Connected, silent.
        }
        case 1 -> write(s, "GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        default ->
            write(
                s,
                "POST "
                    + target
                    + " HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{\"version\":4,");
      }
      return s;
    }

    private static void write(Socket s, String text) throws IOException {
      s.getOutputStream().write(text.getBytes(StandardCharsets.ISO_8859_1));
      s.getOutputStream().flush();
    }

    /** Trickles the slow bodies and reopens what the backend closed. */
    private void keep() {
      while (!stop.get()) {
        for (int i = 0; i < sockets.length && !stop.get(); i++) {
          try {
            if (i % 3 == 2) {
              write(sockets[i], " ");
            }
            if (sockets[i].getInputStream().available() > 0 || sockets[i].isClosed()) {
              sockets[i].close();
              sockets[i] = open(i);
            }
          } catch (IOException e) {
            try {
              sockets[i].close();
              sockets[i] = open(i);
            } catch (IOException again) {
              // Tried again on the next round.
            }
          }
        }
        try {
          Thread.sleep(5000);
        } catch (InterruptedException e) {
          return;
        }
      }
    }

    int open() {
      int n = 0;
      for (Socket s : sockets) {
        if (!s.isClosed()) {
          n++;
        }
      }
      return n;
    }

    @Override
    public void close() throws Exception {
      stop.set(true);
      keeper.interrupt();
      keeper.join(10_000);
      for (Socket s : sockets) {
        s.close();
      }
    }
  }
}
