/**
 * NDMPS: NDMP inside TLS (node:tls, TLS 1.2 and later) on a listener of its own. With
 * client_ca the server asks for a client certificate and verifies it (mutual TLS); a verified
 * certificate whose subject CN a [[user]] names (cert_cn) logs the session in as that user.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { createServer, TLSSocket, type Server } from "node:tls";
import type { Config, TlsConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { audit } from "../security/audit.ts";
import { socketPeer } from "../transport/tcp.ts";

export function createNdmpsServer(tls: TlsConfig, log: Logger, onSecure: (sock: Socket) => void): Server {
  const srv = createServer(
    {
      cert: readFileSync(tls.cert),
      key: readFileSync(tls.key),
      minVersion: "TLSv1.2",
      handshakeTimeout: tls.handshakeTimeoutMs,
      allowHalfOpen: false,
      ...(tls.clientCa ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: tls.requireClientCert } : {}),
    },
    onSecure,
  );
  // A failed handshake: plain NDMP (it waits for our NOTIFY, so the timeout ends it), a client
  // certificate missing, expired or from another CA, TLS older than 1.2.
  srv.on("tlsClientError", (err: NodeJS.ErrnoException, sock: Socket) => {
    audit(log, { event: "refused", user: undefined, peer: socketPeer(sock), operation: "TLS handshake", outcome: err.code ?? "TLS_ERROR", why: err.message });
    sock.destroy(); // not every runtime closes it on its own
  });
  return srv;
}

/** The user a verified client certificate maps to (cert_cn), if any. */
export function certificateUser(sock: Socket, config: Config): { user: string; cn: string } | undefined {
  if (!(sock instanceof TLSSocket) || !sock.authorized) return undefined;
  const cn = sock.getPeerCertificate()?.subject?.CN;
  if (typeof cn !== "string") return undefined;
  const user = config.certUsers.get(cn);
  return user === undefined ? undefined : { user, cn };
}
