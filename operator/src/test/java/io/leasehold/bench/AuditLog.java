package io.leasehold.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.stream.Stream;

/**
 * The API server's audit log of a {@code hack/cluster.sh} cluster ({@code DIR/logs/audit.log}, one
 * JSON event per line at the Metadata level), read from where the last read ended: each request
 * once (a watch's two stages share an auditID), with who made it, its verb, resource and when the
 * server received it. Follows the file across a rotation.
 */
final class AuditLog {

  /** One request as the API server recorded it. */
  record Request(
      String auditId,
      String user,
      String verb,
      String resource,
      String subresource,
      String namespace,
      String name,
      int code,
      Instant received) {

    /** {@code verb resource[/subresource]}, for example {@code patch jobs}. */
    String kind() {
      if (resource == null) {
        return verb + " (a URL that is no resource)";
      }
      return verb + " " + resource + (subresource == null ? "" : "/" + subresource);
    }

    /** {@link #kind()}, with the namespace when it is not {@code namespace}. */
    String kindIn(String namespace) {
      if (this.namespace == null) {
        return kind() + " (cluster-wide)";
      }
      return this.namespace.equals(namespace) ? kind() : kind() + " (in " + this.namespace + ")";
    }
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  private final Path file;
  private Object inode;
  private long offset;
  private final Set<String> seen = new HashSet<>();

  private AuditLog(Path file) {
    this.file = file;
  }

  /** The audit log of the cluster in {@code clusterDir}; fails when it keeps none. */
  static AuditLog of(Path clusterDir) {
    Path file = clusterDir.resolve("logs/audit.log");
    if (!Files.isRegularFile(file)) {
      throw new IllegalStateException(
          "the cluster in "
              + clusterDir
              + " keeps no audit log ("
              + file
              + " is missing): it was started by a hack/cluster.sh without one; restart it with"
              + " `hack/cluster.sh down "
              + clusterDir
              + " && hack/cluster.sh up "
              + clusterDir
              + "`");
    }
    AuditLog log = new AuditLog(file);
    log.skipToEnd();
    return log;
  }

  /** Forgets everything recorded so far: the next {@link #read()} starts from now. */
  synchronized void skipToEnd() {
    try {
      inode = inode(file);
      offset = Files.size(file);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The requests recorded since the last read (or {@link #skipToEnd()}), in the log's order. */
  synchronized List<Request> read() {
    try {
      List<Request> out = new ArrayList<>();
      Object now = inode(file);
      if (!Objects.equals(now, inode)) {
        // Rotated: the rest of the old file is in a backup beside it, under the same inode.
        Path rotated = rotatedFile(inode);
        if (rotated != null) {
          readFrom(rotated, offset, out);
        }
        inode = now;
        offset = 0;
      }
      offset = readFrom(file, offset, out);
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private Path rotatedFile(Object inode) throws IOException {
    try (Stream<Path> files = Files.list(file.getParent())) {
      for (Path p : files.toList()) {
        String n = p.getFileName().toString();
        if (n.startsWith("audit-") && n.endsWith(".log") && Objects.equals(inode(p), inode)) {
          return p;
        }
      }
    }
    return null;
  }

  /** Reads the complete lines from {@code from} on; returns the offset after the last one. */
  private long readFrom(Path path, long from, List<Request> out) throws IOException {
    try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = channel.size();
      if (size <= from) {
        return from;
      }
      ByteBuffer buffer = ByteBuffer.allocate((int) Math.min(Integer.MAX_VALUE - 8, size - from));
      channel.position(from);
      while (buffer.hasRemaining() && channel.read(buffer) > 0) {
        // reads to the end as it was
      }
      byte[] bytes = buffer.array();
      int length = buffer.position();
      int start = 0;
      for (int i = 0; i < length; i++) {
        if (bytes[i] == '\n') {
          parse(new String(bytes, start, i - start, StandardCharsets.UTF_8), out);
          start = i + 1;
        }
      }
      return from + start;
    }
  }

  private void parse(String line, List<Request> out) throws IOException {
    if (line.isBlank()) {
      return;
    }
    JsonNode e = JSON.readTree(line);
    String id = e.path("auditID").asText();
    if (!seen.add(id)) {
      return;
    }
    JsonNode ref = e.path("objectRef");
    out.add(
        new Request(
            id,
            e.path("user").path("username").asText(),
            e.path("verb").asText(),
            text(ref, "resource"),
            text(ref, "subresource"),
            text(ref, "namespace"),
            text(ref, "name"),
            e.path("responseStatus").path("code").asInt(0),
            Instant.parse(e.path("requestReceivedTimestamp").asText())));
  }

  private static String text(JsonNode node, String field) {
    JsonNode v = node.get(field);
    return v == null || v.isNull() || v.asText().isEmpty() ? null : v.asText();
  }

  private static Object inode(Path p) throws IOException {
    return Files.getAttribute(p, "unix:ino");
  }
}
