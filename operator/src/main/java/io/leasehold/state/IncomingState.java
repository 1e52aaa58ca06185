package io.leasehold.state;

import io.leasehold.api.StateFacts;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.List;
import java.util.zip.GZIPInputStream;

/**
 * A state sent to be written. Its body is taken as it arrives ({@link Receiver}): counted against
 * the size limit, hashed for its Content-MD5 and gzip'd into Secret-sized parts, so that the body
 * itself is never held, only its compressed parts, and nothing waits on the network to do it. Its
 * facts are then read from those parts by the same parser as a stored state's.
 */
public final class IncomingState {

  private static final String WHERE = "request body";

  private final long bytes;
  private final boolean tooLarge;
  private final String md5;
  private final List<Chunk> parts;
  private final StateFacts facts;
  private final String notEncrypted;
  private final StateUnreadableException notAState;

  private IncomingState(
      long bytes,
      boolean tooLarge,
      String md5,
      List<Chunk> parts,
      StateJson.Document document,
      StateUnreadableException notAState) {
    this.bytes = bytes;
    this.tooLarge = tooLarge;
    this.md5 = md5;
    this.parts = parts;
    this.facts = document == null ? null : document.facts();
    this.notEncrypted = document == null ? null : document.notEncrypted();
    this.notAState = notAState;
  }

  /**
   * Takes a body piece by piece as it arrives (from one thread at a time): cheap enough for an
   * event loop, and it never blocks.
   */
  public static final class Receiver {
    private final long maxBytes;
    private final MessageDigest md5 = StoredState.md5();
    private final ChunkedGzip gzip = new ChunkedGzip();
    private long count;

    public Receiver(long maxBytes) {
      this.maxBytes = maxBytes;
    }

    /**
     * Takes the next piece of the body.
     *
     * @return false once the body is over the limit: the rest need not be read
     */
    public boolean accept(byte[] b, int off, int len) {
      if (tooLarge()) {
        return false;
      }
      count += len;
      if (tooLarge()) {
        return false;
      }
      md5.update(b, off, len);
      try {
        gzip.write(b, off, len);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      return true;
    }

    public long count() {
      return count;
    }

    public boolean tooLarge() {
      return count > maxBytes;
    }

    /**
     * The state the whole body makes: its facts are read from the gzip'd parts, streamed (call on a
     * thread that may take a while: the state is decompressed once more to read them).
     */
    public IncomingState finish() {
      if (tooLarge()) {
        return new IncomingState(count, true, null, List.of(), null, null);
      }
      String digest = Base64.getEncoder().encodeToString(md5.digest());
      List<Chunk> parts = gzip.finish();
      try (InputStream raw = new GZIPInputStream(new StoredState.ChunkStream(parts), 64 * 1024)) {
        StateJson.Document document = StateJson.read(raw, WHERE, WHERE);
        document.facts().setRawBytes(count);
        return new IncomingState(count, false, digest, parts, document, null);
      } catch (StateUnreadableException e) {
        return new IncomingState(count, false, digest, List.of(), null, e);
      } catch (IOException e) {
        // Our own gzip of memory: it cannot fail to read.
        throw new UncheckedIOException(e);
      }
    }
  }

  /**
   * Reads {@code body} to its end, or only until it passes {@code maxBytes} (then {@link
   * #tooLarge()}, and the rest is left unread).
   *
   * @throws IOException when the body itself cannot be read (the client went away)
   */
  public static IncomingState read(InputStream body, long maxBytes) throws IOException {
    Receiver receiver = new Receiver(maxBytes);
    byte[] buffer = new byte[64 * 1024];
    while (true) {
      long room = maxBytes - receiver.count();
      int want = room >= buffer.length ? buffer.length : (int) Math.max(0, room) + 1;
      int n = body.read(buffer, 0, want);
      if (n < 0 || !receiver.accept(buffer, 0, n)) {
        break;
      }
    }
    return receiver.finish();
  }

  /** Bytes read: the whole body, or more than the limit when it is over the limit. */
  public long bytes() {
    return bytes;
  }

  public boolean tooLarge() {
    return tooLarge;
  }

  /** Base64 MD5 of the body (null when it was too large to read whole). */
  public String md5() {
    return md5;
  }

  /**
   * Why the body is not a Terraform state, or null when it is one: a {@link NotEncryptedException}
   * when it carries OpenTofu's encryption fields but is not what OpenTofu encrypts.
   */
  public StateUnreadableException notAState() {
    return notAState;
  }

  public StateFacts facts() {
    return facts;
  }

  /**
   * Why the state is not OpenTofu-encrypted ("it is plaintext", or the fields that make it not),
   * naming fields, never their content; null when it is encrypted or not a state.
   */
  public String notEncrypted() {
    return notEncrypted;
  }

  /** The body gzip'd, in parts of at most {@link StateStore#CHUNK_BYTES}. */
  public List<Chunk> parts() {
    return parts;
  }
}
