package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.state.StateNames;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The lock Lease's size, counted as the API server counts it, and the bounds that keep it small.
 */
class LeaseSizeTest {

  @Test
  @DisplayName(
      "Text is counted in UTF-8 bytes as stored: 1 to 4 bytes a character, a lone surrogate as the"
          + " 3-byte replacement character")
  void countsUtf8Bytes() {
    for (String s : new String[] {"", "abc", "é", "€uro", "😀", "a\u0000b", "日本語テキスト"}) {
      assertThat(LeaseSize.utf8(s)).as(s).isEqualTo(s.getBytes(StandardCharsets.UTF_8).length);
    }
    assertThat(LeaseSize.utf8("é")).isEqualTo(2);
    assertThat(LeaseSize.utf8("€")).isEqualTo(3);
    assertThat(LeaseSize.utf8("😀")).isEqualTo(4);
    assertThat(LeaseSize.utf8("\ud800")).isEqualTo(3);
    assertThat(LeaseSize.utf8("x\udc00y")).isEqualTo(5);
  }

  @Test
  @DisplayName(
      "A field is counted as it is stored in JSON: a control character takes 6 bytes (\\u00XX), a"
          + " newline or quote 2, a multi-byte character its UTF-8 bytes")
  void countsJsonEscapes() {
    assertThat(LeaseSize.json("\u0001")).isEqualTo(6);
    assertThat(LeaseSize.json("\u001f\u0002")).isEqualTo(12);
    assertThat(LeaseSize.json("\n")).isEqualTo(2);
    assertThat(LeaseSize.json("\"")).isEqualTo(2);
    assertThat(LeaseSize.json("\\")).isEqualTo(2);
    assertThat(LeaseSize.json("é€😀")).isEqualTo(2 + 3 + 4);
    // The sum of the fields and the names is exactly what the lock-info annotation takes.
    LockInfo info =
        new LockInfo(
            "id-\"1\"", "apply", "\u0001\u0002 info é", "who\n€", "1.11.4", "2025", "p/😀");
    long fields =
        LeaseSize.json(info.id())
            + LeaseSize.json(info.operation())
            + LeaseSize.json(info.info())
            + LeaseSize.json(info.who())
            + LeaseSize.json(info.version())
            + LeaseSize.json(info.created())
            + LeaseSize.json(info.path());
    long empty = LeaseSize.utf8(new LockInfo("", "", "", "", "", "", "").toJson());
    assertThat(LeaseSize.utf8(info.toJson())).isEqualTo(empty + fields);
    // The annotation value is that JSON text; the API server stores it decoded from the request,
    // so it takes its UTF-8 bytes, however the request body escaped it.
    assertThat(LeaseSize.utf8(info.toJson()))
        .isEqualTo(info.toJson().getBytes(StandardCharsets.UTF_8).length);
  }

  @Test
  @DisplayName(
      "A Lease's size is its annotations' keys and values in bytes, as the API server counts them")
  void countsAnnotations() {
    Lease lease = LeaseLock.unlocked(new StateNames("default", "sized", "default"));
    lease = LeaseLock.withAnnotation(lease, "a/b", "€");
    lease = LeaseLock.withAnnotation(lease, "c", "\\u0001");
    assertThat(LeaseSize.of(lease)).isEqualTo(3 + 3 + 1 + 6);
    assertThat(LeaseSize.of(Map.of("k", "v"))).isEqualTo(2);
  }

  @Test
  @DisplayName(
      "A LockInfo field over its limit as stored is refused naming the field and the limit, even"
          + " when it has few characters; at the limit it is taken as sent")
  void fieldsAreBoundedAsStored() {
    LockInfo controlWho = new LockInfo("id", "", "", "\u0001".repeat(200), "", "", "");
    assertThat(controlWho.problem())
        .hasValueSatisfying(
            p ->
                assertThat(p)
                    .contains("Who is 200 characters long")
                    .contains("1200 bytes as stored")
                    .contains("at most 1024 bytes"));
    LockInfo wideInfo = new LockInfo("id", "", "€".repeat(1366), "", "", "", "");
    assertThat(wideInfo.problem())
        .hasValueSatisfying(p -> assertThat(p).startsWith("Info is 1366").contains("4096"));
    assertThat(new LockInfo("id", "\u0001".repeat(43), "", "", "", "", "").problem())
        .hasValueSatisfying(p -> assertThat(p).startsWith("Operation").contains("256"));
    assertThat(new LockInfo("id", "", "", "", "", "", "\u0001".repeat(700)).problem())
        .hasValueSatisfying(p -> assertThat(p).startsWith("Path"));
    LockInfo atLimits =
        new LockInfo(
            "€".repeat(LockInfo.MAX_ID),
            "\u0001".repeat(42),
            "\u0001".repeat(682) + "abcd",
            "\u0001".repeat(170) + "abcd",
            "€".repeat(85) + "a",
            "\"".repeat(128),
            "😀".repeat(1024));
    assertThat(atLimits.problem()).isEmpty();
    assertThat(LeaseSize.utf8(atLimits.toJson())).isLessThanOrEqualTo(LockInfo.MAX_STORED);
  }

  @Test
  @DisplayName(
      "The budget keeps the holder's part free within 200 KiB, well under the API server's 256 KiB")
  void budgetAddsUp() {
    assertThat(LeaseSize.API_LIMIT).isEqualTo(262_144);
    assertThat(LeaseSize.BUDGET).isLessThan(LeaseSize.API_LIMIT);
    assertThat(LeaseSize.LINE_BUDGET + LeaseSize.HOLDER_RESERVE).isEqualTo(LeaseSize.BUDGET);
    assertThat(LeaseSize.LINE_BUDGET).isGreaterThan(LeaseSize.BUDGET / 2);
  }

  @Test
  @DisplayName(
      "A place keeps who asked cleaned and cut: control characters (6 bytes each in the line's"
          + " JSON) become '?', and at most 64 characters stay")
  void placesKeepShortWho() {
    Ticket t = Ticket.client("id", "\u0001".repeat(500), "d", "r", Instant.EPOCH);
    assertThat(t.who()).hasSize(Ticket.WHO_KEPT).doesNotContain("\u0001");
    assertThat(Ticket.job("uid", "j".repeat(253), Instant.EPOCH).who()).hasSize(Ticket.WHO_KEPT);
    // The room a place takes is what it adds to the line, with room to grow.
    Line one = Line.of(java.util.List.of(t));
    Line two = one.append(Ticket.job("uid", "job", Instant.EPOCH));
    assertThat(LeaseSize.utf8(two.toJson()) - LeaseSize.utf8(one.toJson()))
        .isEqualTo(LeaseSize.place(Ticket.job("uid", "job", Instant.EPOCH)));
  }
}
