package io.leasehold.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AuditLogTest {

  @TempDir Path dir;

  private static String event(String id, String stage, String verb, String resource) {
    return """
        {"kind":"Event","level":"Metadata","auditID":"%s","stage":"%s","verb":"%s",\
        "user":{"username":"system:serviceaccount:leasehold-system:leasehold"},\
        "objectRef":{"resource":"%s","namespace":"ns","name":"x"},\
        "responseStatus":{"code":200},"requestReceivedTimestamp":"2026-12-07T06:30:34.632680Z"}
        """
        .formatted(id, stage, verb, resource);
  }

  private void append(Path file, String text) throws Exception {
    Files.writeString(
        file, text, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
  }

  @Test
  void readsEachRequestOnceFromTheLastReadOnAcrossARotation() throws Exception {
    Path logs = Files.createDirectories(dir.resolve("logs"));
    Path file = logs.resolve("audit.log");
    append(file, event("0", "ResponseComplete", "get", "leases"));
    AuditLog log = AuditLog.of(dir);
    assertThat(log.read()).as("what was there before is skipped").isEmpty();

    append(file, event("1", "ResponseStarted", "watch", "pods"));
    append(file, event("2", "ResponseComplete", "update", "leases"));
    // A line still being written is left for the next read.
    append(file, event("3", "ResponseComplete", "patch", "jobs").strip());
    assertThat(log.read())
        .extracting(AuditLog.Request::kind)
        .containsExactly("watch pods", "update leases");

    append(file, "\n" + event("1", "ResponseComplete", "watch", "pods"));
    Files.move(file, logs.resolve("audit-2026-12-07T06-40-00.000.log"));
    append(file, event("4", "ResponseComplete", "create", "events"));
    List<AuditLog.Request> read = log.read();
    assertThat(read)
        .as("the rest of the rotated file, then the new one; a watch's second stage not again")
        .extracting(AuditLog.Request::auditId)
        .containsExactly("3", "4");
    assertThat(read.get(0).kindIn("ns")).isEqualTo("patch jobs");
    assertThat(read.get(0).kindIn("other")).isEqualTo("patch jobs (in ns)");
  }
}
