package io.leasehold.state;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;

/**
 * One Secret's worth of gzip data (at most {@link StateStore#CHUNK_BYTES}), held in pieces of
 * {@value #PIECE} bytes. A single array of 1 MiB would be a "humongous" object to the G1 collector
 * and take two whole heap regions; pieces this small are ordinary objects, so a state held as
 * chunks costs its size and no more. Pieces are a multiple of 3 bytes, so their base64 texts join
 * into the chunk's.
 */
public final class Chunk {

  /** Bytes per piece: a multiple of 3, well under half the smallest G1 region (1 MiB). */
  static final int PIECE = 3 * 43_690;

  /** Base64 characters per piece. */
  private static final int PIECE_TEXT = PIECE / 3 * 4;

  private final List<byte[]> pieces;
  private final int length;

  Chunk(List<byte[]> pieces) {
    this.pieces = List.copyOf(pieces);
    this.length = pieces.stream().mapToInt(p -> p.length).sum();
  }

  /** A chunk holding a copy of {@code bytes}. */
  public static Chunk of(byte[] bytes) {
    List<byte[]> pieces = new ArrayList<>();
    for (int off = 0; off < bytes.length; off += PIECE) {
      pieces.add(java.util.Arrays.copyOfRange(bytes, off, Math.min(bytes.length, off + PIECE)));
    }
    return new Chunk(pieces);
  }

  /**
   * Decodes base64 text piece by piece, never making one large array of it.
   *
   * @throws IllegalArgumentException when the text is not base64
   */
  public static Chunk fromBase64(String text) {
    List<byte[]> pieces = new ArrayList<>();
    Base64.Decoder decoder = Base64.getDecoder();
    for (int off = 0; off < text.length(); off += PIECE_TEXT) {
      byte[] piece = decoder.decode(text.substring(off, Math.min(text.length(), off + PIECE_TEXT)));
      if (piece.length > 0) {
        pieces.add(piece);
      }
    }
    return new Chunk(pieces);
  }

  public int length() {
    return length;
  }

  /** The chunk's bytes, read without copying them together. */
  public InputStream stream() {
    List<InputStream> streams = new ArrayList<>();
    for (byte[] piece : pieces) {
      streams.add(new ByteArrayInputStream(piece));
    }
    return new SequenceInputStream(Collections.enumeration(streams));
  }

  /** The chunk as base64 text, as a Secret's data holds it. */
  public String base64() {
    Base64.Encoder encoder = Base64.getEncoder();
    StringBuilder text = new StringBuilder((length + 2) / 3 * 4);
    for (byte[] piece : pieces) {
      text.append(new String(encoder.encode(piece), StandardCharsets.ISO_8859_1));
    }
    return text.toString();
  }

  /** The chunk's bytes in one array (for tests and small data). */
  public byte[] toByteArray() {
    ByteArrayOutputStream out = new ByteArrayOutputStream(length);
    pieces.forEach(out::writeBytes);
    return out.toByteArray();
  }
}
