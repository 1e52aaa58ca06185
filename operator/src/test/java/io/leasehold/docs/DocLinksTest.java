package io.leasehold.docs;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README leads and the reference lives in docs/: the README stays short, and every relative
 * link in the README and in docs/*.md (and the other Markdown files at the top of the repository)
 * reaches a file that exists and, when it names a heading, a heading that exists, by GitHub's
 * anchor rules.
 */
class DocLinksTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot")).toAbsolutePath().normalize();

  /** The README may grow a little past the 300 lines it aims at, never back into a manual. */
  static final int README_MAX_LINES = 320;

  private static final Pattern FENCE = Pattern.compile("^\\s*(```|~~~)");
  private static final Pattern HEADING =
      Pattern.compile("^ {0,3}(#{1,6})\\s+(.*?)(?:\\s+#+)?\\s*$");
  private static final Pattern CODE_SPAN = Pattern.compile("`[^`]*`");
  private static final Pattern LINK =
      Pattern.compile("!?\\[([^\\]]*)\\]\\(\\s*<?([^)\\s>]+)>?(?:\\s+\"[^\"]*\")?\\s*\\)");
  private static final Pattern SCHEME = Pattern.compile("^[a-zA-Z][a-zA-Z0-9+.-]*:");

  /**
   * The anchor GitHub gives a heading: its text as rendered (no backticks, emphasis or link
   * targets), lower-cased, with every character that is not a letter, digit, space, hyphen or
   * underscore dropped and each space turned into a hyphen.
   */
  static String anchor(String heading) {
    String text = heading.replaceAll("\\[([^\\]]*)\\]\\([^)]*\\)", "$1");
    text = text.replace("`", "").replaceAll("(\\*\\*|__|\\*)", "");
    StringBuilder out = new StringBuilder();
    text.toLowerCase(Locale.ROOT)
        .codePoints()
        .forEach(
            c -> {
              if (c == ' ') {
                out.append('-');
              } else if (Character.isLetterOrDigit(c) || c == '-' || c == '_') {
                out.appendCodePoint(c);
              }
            });
    return out.toString();
  }

  /** Every anchor of a Markdown document: its headings' anchors, repeats numbered -1, -2, ... */
  static Set<String> anchors(String markdown) {
    Set<String> out = new LinkedHashSet<>();
    Map<String, Integer> seen = new HashMap<>();
    for (String line : proseLines(markdown)) {
      Matcher h = HEADING.matcher(line);
      if (h.matches()) {
        String base = anchor(h.group(2));
        int n = seen.merge(base, 1, Integer::sum) - 1;
        out.add(n == 0 ? base : base + "-" + n);
      }
    }
    return out;
  }

  /** The lines outside fenced code blocks, with their line numbers kept as positions. */
  private static List<String> proseLines(String markdown) {
    List<String> out = new ArrayList<>();
    boolean inFence = false;
    for (String line : markdown.split("\n", -1)) {
      if (FENCE.matcher(line).find()) {
        inFence = !inFence;
        out.add("");
      } else {
        out.add(inFence ? "" : line);
      }
    }
    return out;
  }

  /**
   * The broken relative links of one Markdown file: each as {@code file:line: target (why)}. Links
   * to web addresses are left alone.
   */
  static List<String> brokenLinks(Path root, Path file) {
    List<String> problems = new ArrayList<>();
    String markdown = read(file);
    List<String> lines = proseLines(markdown);
    for (int i = 0; i < lines.size(); i++) {
      Matcher m = LINK.matcher(CODE_SPAN.matcher(lines.get(i)).replaceAll(""));
      while (m.find()) {
        String target = m.group(2);
        if (SCHEME.matcher(target).find() || target.startsWith("//")) {
          continue;
        }
        int hash = target.indexOf('#');
        String path = hash < 0 ? target : target.substring(0, hash);
        String fragment = hash < 0 ? null : target.substring(hash + 1);
        String where = root.relativize(file) + ":" + (i + 1) + ": " + target;
        Path resolved =
            path.isEmpty()
                ? file
                : (path.startsWith("/")
                        ? root.resolve(path.substring(1))
                        : file.resolveSibling(path))
                    .normalize();
        if (!resolved.startsWith(root)) {
          problems.add(where + " (outside the repository)");
          continue;
        }
        if (!Files.exists(resolved)) {
          problems.add(where + " (no such file: " + root.relativize(resolved) + ")");
          continue;
        }
        if (fragment == null) {
          continue;
        }
        if (!resolved.toString().endsWith(".md") || Files.isDirectory(resolved)) {
          problems.add(where + " (a heading anchor into a file that is not Markdown)");
          continue;
        }
        Set<String> anchors = anchors(read(resolved));
        if (!anchors.contains(fragment)) {
          problems.add(
              where
                  + " (no heading with anchor '"
                  + fragment
                  + "' in "
                  + root.relativize(resolved)
                  + "; its anchors: "
                  + anchors
                  + ")");
        }
      }
    }
    return problems;
  }

  /** README.md, the other Markdown files at the top of the repository, and docs/*.md. */
  static List<Path> documents(Path root) {
    List<Path> out = new ArrayList<>();
    for (Path dir : List.of(root, root.resolve("docs"))) {
      try (Stream<Path> files = Files.list(dir)) {
        files.filter(f -> f.getFileName().toString().endsWith(".md")).sorted().forEach(out::add);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return out;
  }

  private static String read(Path file) {
    try {
      return Files.readString(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Test
  @DisplayName("The README is at most " + README_MAX_LINES + " lines: the reference is in docs/")
  void readmeIsShort() throws IOException {
    List<String> lines = Files.readAllLines(ROOT.resolve("README.md"), StandardCharsets.UTF_8);
    assertThat(lines.size())
        .as("README.md has %d lines; move reference material into docs/", lines.size())
        .isLessThanOrEqualTo(README_MAX_LINES);
  }

  @Test
  @DisplayName(
      "Every relative link in README.md and docs/*.md reaches a file that exists and a heading"
          + " that exists")
  void relativeLinksResolve() {
    List<Path> documents = documents(ROOT);
    assertThat(documents)
        .contains(ROOT.resolve("README.md"), ROOT.resolve("docs/runbooks.md"))
        .hasSizeGreaterThan(5);
    List<String> problems = new ArrayList<>();
    for (Path doc : documents) {
      problems.addAll(brokenLinks(ROOT, doc));
    }
    assertThat(problems).as("broken links").isEmpty();
  }

  @Test
  @DisplayName("The README links to every document in docs/")
  void readmeLinksEveryDoc() throws IOException {
    String readme = read(ROOT.resolve("README.md"));
    try (Stream<Path> files = Files.list(ROOT.resolve("docs"))) {
      List<String> unlinked =
          files
              .map(f -> "docs/" + f.getFileName())
              .filter(f -> f.endsWith(".md"))
              .filter(f -> !readme.contains("](" + f + ")") && !readme.contains("](" + f + "#"))
              .sorted()
              .toList();
      assertThat(unlinked).as("documents in docs/ the README does not link to").isEmpty();
    }
  }

  @Test
  @DisplayName("Anchors follow GitHub's rules: lower case, spaces to '-', punctuation dropped")
  void anchorsFollowGitHubsRules() {
    assertThat(anchor("The lock's rules")).isEqualTo("the-locks-rules");
    assertThat(anchor("Quick start (no cluster needed)"))
        .isEqualTo("quick-start-no-cluster-needed");
    assertThat(anchor("Runner Jobs: one at a time, in order"))
        .isEqualTo("runner-jobs-one-at-a-time-in-order");
    assertThat(anchor("TerraformState reference (`leasehold.io/v1alpha1`)"))
        .isEqualTo("terraformstate-reference-leaseholdiov1alpha1");
    assertThat(anchor("Waiting in line: `?wait=`")).isEqualTo("waiting-in-line-wait");
    assertThat(anchor("The test command: `hack/test.sh`")).isEqualTo("the-test-command-hacktestsh");
    assertThat(anchor("How it interoperates with Terraform's `kubernetes` backend"))
        .isEqualTo("how-it-interoperates-with-terraforms-kubernetes-backend");
    assertThat(anchors("# A\n## Notes\n```\n## Not a heading\n```\n## Notes\n"))
        .containsExactly("a", "notes", "notes-1");
  }

  @Test
  @DisplayName("A link to a missing file or a missing heading is reported with where it is")
  void brokenLinksAreReported(@TempDir Path root) throws IOException {
    Files.createDirectories(root.resolve("docs"));
    Files.writeString(root.resolve("docs/guide.md"), "# Guide\n\n## The lock's rules\n\ntext\n");
    Files.writeString(
        root.resolve("README.md"),
        String.join(
            "\n",
            "# Title",
            "[ok](docs/guide.md#the-locks-rules) [ok too](#title) [web](https://example.com/x#y)",
            "[gone](docs/missing.md)",
            "[no heading](docs/guide.md#the-lock-rules)",
            "[here](#nowhere)",
            "```",
            "[in a code block](docs/missing.md)",
            "```",
            "`[in a code span](docs/missing.md)`",
            ""));
    assertThat(brokenLinks(root, root.resolve("README.md")))
        .hasSize(3)
        .anySatisfy(p -> assertThat(p).startsWith("README.md:3: docs/missing.md (no such file"))
        .anySatisfy(
            p ->
                assertThat(p)
                    .startsWith("README.md:4: docs/guide.md#the-lock-rules (no heading")
                    .contains("the-locks-rules"))
        .anySatisfy(p -> assertThat(p).startsWith("README.md:5: #nowhere (no heading"));
    assertThat(brokenLinks(root, root.resolve("docs/guide.md"))).isEmpty();
  }
}
