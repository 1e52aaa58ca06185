# Build the jar first: mvn -B -DskipTests package
# then: docker build -t leasehold/leasehold:0.1.0 .
FROM eclipse-temurin:17-jre

COPY operator/target/leasehold.jar /app/leasehold.jar

# Non-root, matching the chart's runAsUser/runAsGroup.
USER 65532:65532

# 8080: Terraform HTTP backend; 8081: health and metrics.
EXPOSE 8080 8081

ENTRYPOINT ["java", "-jar", "/app/leasehold.jar"]
CMD ["run"]
