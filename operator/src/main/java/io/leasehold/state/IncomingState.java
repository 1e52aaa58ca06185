package io.leasehold.state;

import io.leasehold.api.StateFacts;
import java.io.CharConversionException;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.List;

/**
 * A state sent to be written, read from its request body in one pass: counted against the size
 * limit, hashed for its Content-MD5, parsed for its facts and gzip'd into Secret-sized parts as it
 * arrives, so the body itself is never held; only its compressed parts are.
 */
public final class IncomingState {

  private static final String WHERE = "request body";

  private final long bytes;
  private final boolean tooLarge;
  private final String md5;
  private final List<Chunk> parts;
  private final StateFacts facts;
  private final StateUnreadableException notAState;

  private IncomingState(
      long bytes,
      boolean tooLarge,
      String md5,
      List<Chunk> parts,
      StateFacts facts,
      StateUnreadableException notAState) {
    this.bytes = bytes;
    this.tooLarge = tooLarge;
    this.md5 = md5;
    this.parts = parts;
    this.facts = facts;
    this.notAState = notAState;
  }

  /**
   * Reads {@code body} to its end, or only until it passes {@code maxBytes} (then {@link
   * #tooLarge()}, and the rest is left unread).
   *
   * @throws IOException when the body itself cannot be read (the client went away)
   */
  public static IncomingState read(InputStream body, long maxBytes) throws IOException {
    MessageDigest md5 = StoredState.md5();
    Limited limited = new Limited(body, maxBytes);
    Tee tee = new Tee(new DigestInputStream(limited, md5), new ChunkedGzip());
    StateFacts facts = null;
    StateUnreadableException notAState = null;
    try {
      try {
        facts = StoredState.facts(tee, WHERE, WHERE);
      } catch (StateUnreadableException e) {
        notAState = e;
      } catch (CharConversionException e) {
        notAState = new StateUnreadableException(WHERE, WHERE + ": " + ParseFault.describe(e), e);
      }
      if (notAState != null) {
        // Not stored: only the size and the MD5 of the rest still matter.
        tee.stopCopying();
      }
      tee.transferTo(OutputStream.nullOutputStream());
    } catch (TooLarge e) {
      return new IncomingState(limited.count, true, null, List.of(), null, null);
    }
    if (facts != null) {
      facts.setRawBytes(limited.count);
    }
    String digest = Base64.getEncoder().encodeToString(md5.digest());
    List<Chunk> parts = notAState == null ? tee.gzip.finish() : List.of();
    return new IncomingState(limited.count, false, digest, parts, facts, notAState);
  }

  /** Bytes read: the whole body, or the limit plus one when it is over the limit. */
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

  /** Why the body is not a Terraform state, or null when it is one. */
  public StateUnreadableException notAState() {
    return notAState;
  }

  public StateFacts facts() {
    return facts;
  }

  /** The body gzip'd, in parts of at most {@link StateStore#CHUNK_BYTES}. */
  public List<Chunk> parts() {
    return parts;
  }

  /** The body went past the size limit. */
  private static final class TooLarge extends IOException {
    TooLarge() {
      super("over the size limit");
    }
  }

  /** Counts what it reads and fails once that passes the limit. */
  private static final class Limited extends FilterInputStream {
    private final long max;
    private long count;

    Limited(InputStream in, long max) {
      super(in);
      this.max = max;
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      // Reads at most one byte past the limit: enough to know it is over.
      long room = max - count;
      int n = super.read(b, off, room >= len ? len : (int) room + 1);
      if (n > 0) {
        count += n;
        if (count > max) {
          throw new TooLarge();
        }
      }
      return n;
    }

    @Override
    public void close() {
      // The caller owns the body.
    }
  }

  /** Passes what it reads on to the gzip parts, until told to stop; never closes the body. */
  private static final class Tee extends FilterInputStream {
    final ChunkedGzip gzip;
    private boolean copying = true;

    Tee(InputStream in, ChunkedGzip gzip) {
      super(in);
      this.gzip = gzip;
    }

    void stopCopying() {
      copying = false;
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      int n = in.read(b, off, len);
      if (n > 0 && copying) {
        gzip.write(b, off, n);
      }
      return n;
    }

    @Override
    public long skip(long n) throws IOException {
      byte[] buf = new byte[(int) Math.min(Math.max(n, 0), 8192)];
      int r = read(buf, 0, buf.length);
      return Math.max(r, 0);
    }

    @Override
    public boolean markSupported() {
      return false;
    }

    @Override
    public void close() {
      // The JSON parser closes its source when done; the rest is still to be read.
    }
  }
}
