package io.leasehold.fault;

import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.http.AsyncBody;
import io.fabric8.kubernetes.client.http.BasicBuilder;
import io.fabric8.kubernetes.client.http.HttpRequest;
import io.fabric8.kubernetes.client.http.HttpResponse;
import io.fabric8.kubernetes.client.http.Interceptor;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.function.Consumer;

/**
 * A replica's way to the API, which a test can stall and cut: paused, every request the replica
 * makes waits before it is sent (as in a process stopped with SIGSTOP, a long GC pause or a
 * partition) and goes out as it was when resumed; dead, every request fails at once and none
 * reaches the API again (as in a killed process). Requests already waiting when it dies fail too.
 */
final class ApiGate implements Interceptor {

  private enum Mode {
    OPEN,
    PAUSED,
    CUT,
    DEAD
  }

  private final String name;
  private final Consumer<String> refusedLeaseWrite;
  private Mode mode = Mode.OPEN;

  /**
   * @param refusedLeaseWrite told of every lock Lease write the API refused as invalid (422), with
   *     what it said
   */
  ApiGate(String name, Consumer<String> refusedLeaseWrite) {
    this.name = name;
    this.refusedLeaseWrite = refusedLeaseWrite;
  }

  synchronized void pause() {
    if (mode == Mode.OPEN) {
      mode = Mode.PAUSED;
    }
  }

  synchronized void resume() {
    if (mode == Mode.PAUSED) {
      mode = Mode.OPEN;
      notifyAll();
    }
  }

  /** Every request fails at once, as with the API server unreachable, until {@link #mend()}. */
  synchronized void cut() {
    if (mode == Mode.OPEN) {
      mode = Mode.CUT;
    }
  }

  synchronized void mend() {
    if (mode == Mode.CUT) {
      mode = Mode.OPEN;
    }
  }

  synchronized void die() {
    mode = Mode.DEAD;
    notifyAll();
  }

  @Override
  public void before(BasicBuilder builder, HttpRequest request, RequestTags tags) {
    synchronized (this) {
      while (mode == Mode.PAUSED) {
        try {
          wait();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new KubernetesClientException("interrupted while " + name + " was paused");
        }
      }
      if (mode == Mode.CUT) {
        throw new KubernetesClientException(name + " cannot reach the API server");
      }
      if (mode == Mode.DEAD) {
        throw new KubernetesClientException(name + " is dead: its requests reach no API server");
      }
    }
  }

  @Override
  public void after(
      HttpRequest request,
      HttpResponse<?> response,
      AsyncBody.Consumer<List<ByteBuffer>> consumer) {
    if (response.code() == 422
        && !"GET".equals(request.method())
        && request.uri().getPath().contains("/leases/lock-")) {
      refusedLeaseWrite.accept(
          name + ": " + request.method() + " " + request.uri().getPath() + " refused (422)");
    }
  }
}
