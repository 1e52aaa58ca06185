# leasehold's container image: the server jar (the operator without the embedded Kubernetes API,
# the demo, the mock server or any test library) on a Java runtime cut down to the modules it uses,
# on a base image without a shell or a package manager, run as user 65532.
#
#   mvn -B -DskipTests package
#   VERSION="$(java -jar server/target/leasehold-server.jar --version | cut -d' ' -f2)"
#   docker build --build-arg VERSION="$VERSION" --build-arg REVISION="$(git rev-parse HEAD)" \
#       -t leasehold/leasehold:"$VERSION" .
#
# VERSION labels the image and must be the jar's own version (the POM's, which the chart's
# version and appVersion repeat): the build stops when it differs.
#
# hack/test-image.sh builds it (from Debian packages when no image registry is reachable), checks
# the jar in it, runs it the way the Helm chart does and checks it from outside.

# A JDK with its jmods, for jlink. Only this build stage runs commands.
ARG JDK_IMAGE=eclipse-temurin:17-jdk
# The run-time base: glibc, libstdc++, CA certificates and the user 65532, and nothing else.
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${JDK_IMAGE} AS runtime
ARG VERSION
COPY server/target/leasehold-server.jar /tmp/leasehold-server.jar
# The modules the jar needs (jdeps), and those it only loads by name: elliptic-curve TLS, which
# API servers offer, and DNS through JNDI. The container flags are built into the runtime, where
# JAVA_TOOL_OPTIONS and the command line can still override them: the heap follows the memory
# limit, and an OutOfMemoryError ends the process so that Kubernetes restarts it.
RUN set -eu; \
    modules="$(jdeps --ignore-missing-deps --multi-release 17 --print-module-deps /tmp/leasehold-server.jar),jdk.crypto.ec,jdk.naming.dns"; \
    echo "runtime modules: ${modules}"; \
    jlink --add-modules "${modules}" \
        --add-options="-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError" \
        --strip-java-debug-attributes --no-man-pages --no-header-files --compress=2 \
        --output /opt/java; \
    /opt/java/bin/java -jar /tmp/leasehold-server.jar --version; \
    jar_version="$(/opt/java/bin/java -jar /tmp/leasehold-server.jar --version | cut -d' ' -f2)"; \
    if [ "${VERSION:-}" != "${jar_version}" ]; then \
        echo "--build-arg VERSION='${VERSION:-}' (the image's version label) differs from the jar's version ${jar_version}: build with --build-arg VERSION=${jar_version}" >&2; \
        exit 1; \
    fi

FROM ${BASE_IMAGE}
ARG VERSION
ARG REVISION=unknown
ARG SOURCE=https://github.com/leasehold/leasehold
LABEL org.opencontainers.image.title="leasehold" \
      org.opencontainers.image.description="Kubernetes operator that makes Terraform runs in a cluster safe to run at the same time" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=runtime /opt/java /opt/java
COPY server/target/leasehold-server.jar /opt/leasehold/leasehold-server.jar
ENV JAVA_HOME=/opt/java
# Logs as one JSON object per line, the audit trail's included (docs/operations.md, Logs);
# LEASEHOLD_LOG_FORMAT=text for lines a person reads.
ENV LEASEHOLD_LOG_FORMAT=json
# The chart's runAsUser and runAsGroup; the process needs no file it could write but /tmp.
USER 65532:65532
# 8080: Terraform HTTP backend; 8081: /healthz, /readyz and /metrics.
EXPOSE 8080 8081
ENTRYPOINT ["/opt/java/bin/java", "-jar", "/opt/leasehold/leasehold-server.jar"]
CMD ["run"]
