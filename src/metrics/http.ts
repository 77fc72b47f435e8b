/**
 * The optional metrics listener ([metrics] listen): GET /metrics in Prometheus text format.
 * Nothing else is served; it shows no secrets and takes no input.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ListenAddress } from "../config.ts";
import type { Logger } from "../log.ts";
import { registry } from "./metrics.ts";

export class MetricsListener {
  private server: Server | undefined;

  constructor(
    private readonly at: ListenAddress,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("see /metrics\n");
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
        (err) => {
          this.log.error("metrics failed", { err });
          res.writeHead(500).end();
        },
      );
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.at.host, port: this.at.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.log.error("metrics listener error", { err }));
    this.server = server;
    const a = server.address() as AddressInfo;
    this.log.info("metrics listening", { address: a.address, port: a.port });
    return a;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
