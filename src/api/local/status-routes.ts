/**
 * Local API routes for the status service: the agent's cached patch-status
 * report, and the same as Prometheus text.
 *   GET /v1/status               {status: StatusSnapshot} at once; ?refresh=true
 *                                collects afresh and waits for it
 *   GET /v1/status/metrics       the cached report's Prometheus text, then the
 *                                service's own gauges (and the update cycle's counters); 503 until the first report
 */
import type { Hono } from "hono";
import { errorMessage, InvalidArgumentError, UnavailableError } from "../../errors.ts";
import { formatPrometheus } from "../../status/prometheus.ts";
import { formatServiceMetrics, type StatusService } from "../../status/service.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function addStatusRoutes(app: Hono, { status, moreMetrics }: { status: StatusService; moreMetrics?: () => string }): void {
  app.get("/v1/status", async (c) => {
    const refresh = c.req.query("refresh");
    if (refresh !== undefined && refresh !== "true" && refresh !== "false") throw new InvalidArgumentError(`refresh must be true or false (got "${refresh}")`);
    if (refresh !== "true") return c.json({ status: status.snapshot() });
    try {
      return c.json({ status: await status.refresh() });
    } catch (e) {
      throw new UnavailableError(`The status refresh failed: ${errorMessage(e)}`, { cause: e });
    }
  });

  app.get("/v1/status/metrics", (c) => {
    const s = status.snapshot();
    if (!s.report) {
      throw new UnavailableError(
        s.last_error ? `No status report yet: the first check failed (${s.last_error.message})` : "No status report yet: the first check is still running",
      );
    }
    return c.body(formatPrometheus(s.report) + formatServiceMetrics(s) + (moreMetrics?.() ?? ""), 200, { "content-type": PROMETHEUS_CONTENT_TYPE });
  });
}
