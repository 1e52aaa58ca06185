package io.leasehold.cli;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import picocli.CommandLine;

/** {@code leasehold --version}: the version and the commit the jar was built from. */
final class VersionProvider implements CommandLine.IVersionProvider {

  /** Written by the build from {@code src/main/resources-filtered}. */
  static final String BUILD_INFO = "/io/leasehold/build-info.properties";

  @Override
  public String[] getVersion() {
    return new String[] {line(read())};
  }

  static Properties read() {
    Properties info = new Properties();
    try (InputStream in = VersionProvider.class.getResourceAsStream(BUILD_INFO)) {
      if (in != null) {
        info.load(in);
      }
    } catch (IOException e) {
      // An unreadable resource is reported as an unknown version below.
    }
    return info;
  }

  /** {@code leasehold 0.1.0 (commit 0123abc..., modified)}; unknown parts say so. */
  static String line(Properties info) {
    String version = known(info.getProperty("version")).orElse("(unknown version)");
    String commit = known(info.getProperty("commit")).orElse("unknown");
    boolean dirty = "true".equals(info.getProperty("dirty"));
    return "leasehold " + version + " (commit " + commit + (dirty ? ", modified" : "") + ")";
  }

  /** A property the build filled in: not missing, blank, or a placeholder left unresolved. */
  private static java.util.Optional<String> known(String value) {
    if (value == null || value.isBlank() || value.contains("${")) {
      return java.util.Optional.empty();
    }
    return java.util.Optional.of(value.trim());
  }
}
