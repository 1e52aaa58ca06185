package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.ops.AuditLog;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.ext.web.RoutingContext;
import java.util.TreeSet;

/**
 * What every backend request passes before its body is read: its namespace is served, its
 * Content-Length is within the limit, and its requester is authenticated and may do what it asks on
 * the state (checked off the event loop). A request that fails a check is answered here.
 */
final class RequestChecks {

  /** The state a request addresses, who sent it and what they may do, once checked. */
  record Resolved(StateBackend.Target target, Requester who, Access.Verb allowed) {}

  private final Vertx vertx;
  private final StateBackend backend;
  private final Access access;
  private final HttpBackend.Config config;

  RequestChecks(Vertx vertx, StateBackend backend, Access access, HttpBackend.Config config) {
    this.vertx = vertx;
    this.backend = backend;
    this.access = access;
    this.config = config;
  }

  /** A namespace outside --namespace is not served: the operator may not read it. */
  boolean served(RoutingContext ctx) {
    String ns = ctx.pathParam("ns");
    if (config.namespaces().isEmpty() || config.namespaces().contains(ns)) {
      return true;
    }
    Responses.send(
        ctx,
        Reply.text(
            404,
            "namespace "
                + DisplayText.clean(ns, 80)
                + " is not served by this leasehold (it watches "
                + String.join(", ", new TreeSet<>(config.namespaces()))
                + ")"));
    return false;
  }

  /**
   * Refuses at once a request whose Content-Length says its body is over {@code limit}: nothing of
   * it is read.
   */
  boolean lengthWithin(RoutingContext ctx, long limit, String what, String hint) {
    String length = ctx.request().getHeader("Content-Length");
    if (length == null) {
      return true;
    }
    String digits = length.trim();
    if (!digits.matches("[0-9]{1,19}")) {
      Responses.send(ctx, Reply.text(400, "Content-Length is not a number"));
      return false;
    }
    if (digits.length() > 18 || Long.parseLong(digits) > limit) {
      Responses.send(
          ctx,
          Reply.text(
              413,
              what + " is over the limit of " + limit + " bytes" + hint + ". Nothing was done."));
      return false;
    }
    return true;
  }

  /**
   * Authenticates the requester and checks one of {@code verbs} (the first that is allowed) on the
   * state, off the event loop; nothing of the body is read before.
   */
  Future<Resolved> authorize(RoutingContext ctx, Access.Verb... verbs) {
    String authorization = ctx.request().getHeader("Authorization");
    // A verified client certificate identifies the client where no token is sent.
    var certificate = ClientCertificate.of(ctx.request());
    String ns = ctx.pathParam("ns");
    String name = ctx.pathParam("name");
    return vertx.executeBlocking(
        () -> {
          Requester who;
          try {
            who = access.authenticate(authorization, certificate);
          } catch (ReplyException e) {
            AuditLog.line("access-refused", ns, name)
                .with("status", e.reply().status())
                .with("reason", "not authenticated")
                .log();
            throw e;
          }
          ReplyException refused = null;
          for (Access.Verb verb : verbs) {
            try {
              access.authorize(who, verb, ns, name);
              return new Resolved(backend.resolve(ns, name), who, verb);
            } catch (ReplyException e) {
              if (refused == null) {
                refused = e;
              }
            }
          }
          AuditLog.line("access-refused", ns, name)
              .with("who", who)
              .with("status", refused.reply().status())
              .with(
                  "reason",
                  "may not " + verbs[0].name().toLowerCase(java.util.Locale.ROOT).replace('_', '-'))
              .log();
          throw refused;
        },
        false);
  }
}
