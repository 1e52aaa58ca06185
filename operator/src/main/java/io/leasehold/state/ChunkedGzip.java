package io.leasehold.state;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.GZIPOutputStream;

/**
 * Gzip written straight into parts of at most {@link StateStore#CHUNK_BYTES} bytes, the way the
 * state Secrets hold it: the compressed data exists once, already split into {@link Chunk}s, and
 * nothing is copied but the last piece of each chunk.
 */
public final class ChunkedGzip extends OutputStream {

  private static final int BUFFER = 64 * 1024;

  private final Parts parts;
  private final GZIPOutputStream gzip;
  private boolean finished;

  public ChunkedGzip() {
    this(StateStore.CHUNK_BYTES);
  }

  ChunkedGzip(int partBytes) {
    this.parts = new Parts(partBytes);
    try {
      this.gzip = new GZIPOutputStream(parts, BUFFER);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The gzip of {@code raw}, in parts. */
  public static List<Chunk> of(byte[] raw) {
    return of(new ByteArrayInputStream(raw));
  }

  /** The gzip of everything {@code raw} holds, in parts. */
  public static List<Chunk> of(InputStream raw) {
    ChunkedGzip gz = new ChunkedGzip();
    try {
      raw.transferTo(gz);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return gz.finish();
  }

  @Override
  public void write(int b) throws IOException {
    gzip.write(b);
  }

  @Override
  public void write(byte[] b, int off, int len) throws IOException {
    gzip.write(b, off, len);
  }

  /** Ends the gzip stream and returns its parts: at least one, each but the last full. */
  public List<Chunk> finish() {
    if (!finished) {
      finished = true;
      try {
        gzip.finish();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return parts.done();
  }

  /**
   * Collects bytes into chunks of {@code partBytes}, each kept in pieces of {@link Chunk#PIECE}.
   */
  private static final class Parts extends OutputStream {
    private final int partBytes;
    private final List<Chunk> full = new ArrayList<>();
    private final List<byte[]> pieces = new ArrayList<>();
    private byte[] piece;
    private int pieceUsed;
    private int chunkUsed;

    Parts(int partBytes) {
      this.partBytes = partBytes;
    }

    @Override
    public void write(int b) {
      write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) {
      while (len > 0) {
        if (chunkUsed == partBytes) {
          endChunk();
        }
        if (piece == null) {
          piece = new byte[Math.min(Chunk.PIECE, partBytes - chunkUsed)];
          pieceUsed = 0;
        }
        int n = Math.min(len, piece.length - pieceUsed);
        System.arraycopy(b, off, piece, pieceUsed, n);
        pieceUsed += n;
        chunkUsed += n;
        off += n;
        len -= n;
        if (pieceUsed == piece.length) {
          pieces.add(piece);
          piece = null;
        }
      }
    }

    private void endChunk() {
      if (piece != null) {
        pieces.add(Arrays.copyOf(piece, pieceUsed));
        piece = null;
      }
      full.add(new Chunk(pieces));
      pieces.clear();
      chunkUsed = 0;
    }

    List<Chunk> done() {
      if (chunkUsed > 0 || full.isEmpty()) {
        endChunk();
      }
      return List.copyOf(full);
    }
  }
}
