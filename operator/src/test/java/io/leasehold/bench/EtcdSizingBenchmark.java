package io.leasehold.bench;

import static io.leasehold.backend.BackendClientAccess.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.HistorySpec;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Random;
import java.util.zip.GZIPOutputStream;

/**
 * What a state costs in etcd: for states of a few sizes, written through the backend as Terraform
 * writes them (lock, POST, unlock) until history holds {@code spec.history.keep} versions, the
 * bytes of the Secrets that hold it: the current state (gzip, chunked at 1 MiB) and the history
 * Secrets. The state is generated like a real one (resources with provider IDs, ARNs, IPs, tags and
 * some opaque base64), so gzip shrinks it as it shrinks a real state, not as it shrinks zeros.
 */
final class EtcdSizingBenchmark implements Benchmark {

  static final List<Integer> SIZES = List.of(1 << 20, 8 << 20, 32 << 20);
  private static final double MIB = 1024.0 * 1024.0;

  @Override
  public String id() {
    return "etcd-size";
  }

  @Override
  public String title() {
    return "etcd sizing: bytes stored per state, by state size, with history";
  }

  @Override
  public String description(BenchSettings settings) {
    return "For each raw state size (1, 8 and 32 MiB of state JSON generated like a real one:"
        + " resources with provider IDs, ARNs, IPs, tags and some opaque base64; each version"
        + " changes 2% of the resources and the serial), "
        + (HistorySpec.DEFAULT_KEEP + 2)
        + " versions are written through the HTTP backend (LOCK, POST, UNLOCK), so that history"
        + " holds `spec.history.keep` = "
        + HistorySpec.DEFAULT_KEEP
        + " versions (the default; the current one included); then the Secrets of that state are"
        + " listed and their data counted: the state Secret and its chunks (the current version,"
        + " gzip), and the history Secrets. The gzip size of one version is computed here, for"
        + " comparison. etcd stores each Secret's data as bytes (protobuf; base64 exists only in"
        + " the JSON of the API), plus about 1 KiB of metadata per object, and keeps a replaced"
        + " object's old revisions until the API server's compaction (every 5 minutes by"
        + " default): `cluster-etcd-size` measures etcd itself.";
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    List<Figure> figures = new ArrayList<>();
    for (int size : SIZES) {
      // A fresh API and operator for each size: the in-memory API holds every object it stores.
      try (OperatorHarness h = OperatorHarness.start()) {
        var backend = new BackendClientAccess(h.startBackend(64L << 20));
        String label = (size >> 20) + " MiB";
        String name = "sized-" + (size >> 20) + "m";
        TerraformState s = new TerraformState();
        s.getMetadata().setName(name);
        s.getMetadata().setNamespace(NAMESPACE);
        h.client().resource(s).create();
        String state = NAMESPACE + "/" + name;
        Generated generated = new Generated(size, name.hashCode());
        String last = null;
        int versions = HistorySpec.DEFAULT_KEEP + 2;
        for (int serial = 1; serial <= versions; serial++) {
          last = generated.version(serial);
          String id = "sizing-" + serial;
          expect(backend.lock(state, lockInfo(id, "sizing@bench"), null), 200, "LOCK", label);
          expect(backend.post(state, id, last), 200, "write of version " + serial, label);
          expect(backend.unlock(state, lockInfo(id, "sizing@bench")), 200, "UNLOCK", label);
        }
        StateNames names = new StateNames(NAMESPACE, name, "default");
        long[] bytes = settled(h, names);
        double gzip = gzip(last.getBytes(StandardCharsets.UTF_8)) / MIB;
        double raw = last.getBytes(StandardCharsets.UTF_8).length / MIB;
        double total = (bytes[0] + bytes[1]) / MIB;
        String p = label + " state: ";
        figures.add(Figure.of(p + "raw JSON", raw, "MiB"));
        figures.add(Figure.of(p + "one version, gzip", gzip, "MiB"));
        figures.add(Figure.of(p + "state Secret(s), current version", bytes[0] / MIB, "MiB"));
        figures.add(Figure.of(p + "history Secrets", bytes[1] / MIB, "MiB"));
        figures.add(Figure.of(p + "versions in history", bytes[2], ""));
        figures.add(Figure.of(p + "Secret objects", bytes[3], ""));
        figures.add(Figure.of(p + "all its Secrets", total, "MiB"));
        figures.add(Figure.of(p + "all its Secrets per byte of raw state", total / raw, "x"));
      }
    }
    return figures;
  }

  private static void expect(int status, int expected, String what, String label) {
    if (status != expected) {
      throw new IllegalStateException(
          what + " of the " + label + " state answered " + status + ", not " + expected);
    }
  }

  /**
   * Bytes of the state Secret and its chunks, bytes of the history Secrets, versions in history,
   * and Secret objects, once history has been pruned to its size.
   */
  private static long[] settled(OperatorHarness h, StateNames names) throws InterruptedException {
    Instant deadline = Instant.now().plus(Duration.ofMinutes(2));
    while (true) {
      long current = 0;
      long history = 0;
      long objects = 0;
      java.util.Set<String> versions = new java.util.HashSet<>();
      for (Secret secret : h.client().secrets().inNamespace(NAMESPACE).list().getItems()) {
        String n = secret.getMetadata().getName();
        var labels = secret.getMetadata().getLabels();
        boolean inHistory =
            labels != null
                && "true".equals(labels.get(StateHistory.HISTORY_LABEL))
                && names.name().equals(labels.get(StateNames.LABEL_STATE));
        boolean isState = n.equals(names.secretName()) || names.chunkIndex(n) > 0;
        if (!inHistory && !isState) {
          continue;
        }
        long b = dataBytes(secret);
        objects++;
        if (inHistory) {
          history += b;
          // lh-history-WS-NAME-ID-CHUNK: one version per ID.
          versions.add(n.replaceAll("-\\d+$", ""));
        } else {
          current += b;
        }
      }
      if (versions.size() <= HistorySpec.DEFAULT_KEEP || Instant.now().isAfter(deadline)) {
        return new long[] {current, history, versions.size(), objects};
      }
      Thread.sleep(500);
    }
  }

  private static long dataBytes(Secret secret) {
    long n = 0;
    if (secret.getData() != null) {
      for (String v : secret.getData().values()) {
        n += Base64.getDecoder().decode(v).length;
      }
    }
    return n;
  }

  private static long gzip(byte[] raw) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
      gz.write(raw);
    }
    return out.size();
  }

  /** A Terraform state of about a given size, in versions that differ as applies make them. */
  static final class Generated {
    private final int resources;
    private final long seed;
    private final String lineage;

    Generated(int bytes, long seed) {
      this.seed = seed;
      // As many resources as make the size: their mean size, measured on a sample.
      StringBuilder sample = new StringBuilder();
      for (int i = 0; i < 200; i++) {
        resource(sample, i, new Random(seed + i));
      }
      // 1% under the size, so the largest stays within the chart's maxStateBytes (32 MiB).
      this.resources = Math.max(1, (int) ((long) bytes * 198 / sample.length()));
      this.lineage = new java.util.UUID(seed, ~seed).toString();
    }

    /** Version {@code serial}: 2% of the resources changed since the previous one. */
    String version(int serial) {
      StringBuilder b = new StringBuilder(resources * 1700);
      b.append("{\"version\":4,\"terraform_version\":\"1.9.8\",\"serial\":")
          .append(serial)
          .append(",\"lineage\":\"")
          .append(lineage)
          .append("\",\"outputs\":{},\"resources\":[");
      for (int i = 0; i < resources; i++) {
        // A resource changes in the versions where its turn comes (every 50th, shifting).
        int generation = (serial + i % 50) / 50;
        Random r = new Random(seed * 31 + i * 1_000_003L + generation);
        if (i > 0) {
          b.append(',');
        }
        resource(b, i, r);
      }
      return b.append("],\"check_results\":null}").toString();
    }

    private static final String[] TYPES = {
      "aws_instance", "aws_security_group_rule", "aws_iam_role_policy", "aws_route53_record",
      "kubernetes_config_map", "google_compute_instance", "aws_s3_object",
          "azurerm_network_interface"
    };

    private static void resource(StringBuilder b, int i, Random r) {
      String type = TYPES[i % TYPES.length];
      String id = hex(r, 17);
      b.append("{\"mode\":\"managed\",\"type\":\"")
          .append(type)
          .append("\",\"name\":\"r")
          .append(i)
          .append("\",\"provider\":\"provider[\\\"registry.terraform.io/hashicorp/aws\\\"]\",")
          .append("\"instances\":[{\"schema_version\":1,\"attributes\":{")
          .append("\"id\":\"i-")
          .append(id)
          .append("\",\"arn\":\"arn:aws:ec2:eu-west-1:")
          .append(100000000000L + r.nextInt(1000))
          .append(":instance/i-")
          .append(id)
          .append("\",\"ami\":\"ami-")
          .append(hex(r, 17))
          .append("\",\"instance_type\":\"")
          .append(r.nextBoolean() ? "t3.medium" : "m5.large")
          .append("\",\"availability_zone\":\"eu-west-1")
          .append((char) ('a' + r.nextInt(3)))
          .append("\",\"private_ip\":\"10.")
          .append(r.nextInt(256))
          .append('.')
          .append(r.nextInt(256))
          .append('.')
          .append(r.nextInt(256))
          .append("\",\"subnet_id\":\"subnet-")
          .append(hex(r, 17))
          .append("\",\"vpc_security_group_ids\":[\"sg-")
          .append(hex(r, 17))
          .append("\",\"sg-")
          .append(hex(r, 17))
          .append("\"],\"monitoring\":false,\"ebs_optimized\":true,\"root_block_device\":[{")
          .append("\"delete_on_termination\":true,\"encrypted\":true,\"iops\":3000,")
          .append("\"kms_key_id\":\"arn:aws:kms:eu-west-1:123456789012:key/")
          .append(new java.util.UUID(r.nextLong(), r.nextLong()))
          .append("\",\"volume_size\":")
          .append(8 + r.nextInt(200))
          .append(",\"volume_type\":\"gp3\"}],\"tags\":{\"Name\":\"r")
          .append(i)
          .append("\",\"team\":\"platform\",\"env\":\"production\",\"cost-center\":\"")
          .append(1000 + r.nextInt(50))
          .append("\"},\"user_data_base64\":\"");
      byte[] opaque = new byte[330];
      r.nextBytes(opaque);
      b.append(Base64.getEncoder().encodeToString(opaque))
          .append("\",\"timeouts\":null},\"sensitive_attributes\":[],\"private\":\"")
          .append(
              Base64.getEncoder()
                  .encodeToString(("{\"schema_version\":\"1\"}").getBytes(StandardCharsets.UTF_8)))
          .append("\",\"dependencies\":[\"aws_security_group.r")
          .append(i % 97)
          .append("\",\"aws_subnet.r")
          .append(i % 13)
          .append("\"]}]}");
    }

    private static String hex(Random r, int n) {
      StringBuilder s = new StringBuilder(n);
      for (int k = 0; k < n; k++) {
        s.append(Character.forDigit(r.nextInt(16), 16));
      }
      return s.toString();
    }
  }
}
