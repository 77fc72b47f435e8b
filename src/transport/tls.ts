/**
 * TLS on data connections between two ndmpd servers (the NDMPD_DATA_TLS extension class,
 * selected by the DMA through CONFIG_SET_EXT_LIST on both sessions). Both sides present their
 * [tls] certificate and verify the other's against [tls] peer_ca: the listening side as the
 * TLS server (asking for a client certificate), the connecting side as the client. NDMP hands
 * out data addresses as IP numbers, so the check is the chain to peer_ca (a CA for your NDMP
 * servers), not a host name.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { connect, createSecureContext, TLSSocket, type SecureContext } from "node:tls";
import type { TlsConfig } from "../config.ts";

/** The extension class (proprietary range, §7.3) and its one version. */
export const DATA_TLS_CLASS = 0x2dd0;
export const DATA_TLS_VERSION = 1;

export interface DataTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  context: SecureContext;
}

const loaded = new WeakMap<TlsConfig, DataTls>();

/** The [tls] files for data connections, read once per configuration; undefined without peer_ca. */
export function dataTlsOf(tls: TlsConfig | undefined): DataTls | undefined {
  if (!tls?.peerCa) return undefined;
  let d = loaded.get(tls);
  if (!d) {
    const cert = readFileSync(tls.cert);
    const key = readFileSync(tls.key);
    const ca = readFileSync(tls.peerCa);
    d = { cert, key, ca, context: createSecureContext({ cert, key, ca, minVersion: "TLSv1.2" }) };
    loaded.set(tls, d);
  }
  return d;
}

/** The listening side: the handshake on an accepted socket; resolves paused, once verified. */
export function secureAccepted(sock: Socket, tls: DataTls, timeoutMs = 15_000): Promise<TLSSocket> {
  const t = new TLSSocket(sock, { isServer: true, secureContext: tls.context, requestCert: true, rejectUnauthorized: true });
  sock.resume(); // accepted paused: the handshake needs its bytes
  return handshake(t, "secure", timeoutMs);
}

/** The connecting side: TLS over a connected socket, the listener's certificate verified. */
export function secureConnected(sock: Socket, tls: DataTls, timeoutMs = 15_000): Promise<TLSSocket> {
  const t = connect({ socket: sock, cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: "TLSv1.2", checkServerIdentity: () => undefined });
  return handshake(t, "secureConnect", timeoutMs);
}

function handshake(t: TLSSocket, event: "secure" | "secureConnect", timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("TLS handshake timed out")), timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      t.destroy();
      reject(e);
    };
    t.once("error", fail);
    t.once(event, () => {
      clearTimeout(timer);
      t.off("error", fail);
      if (!t.authorized) return fail(new Error(`TLS peer not verified: ${t.authorizationError}`));
      t.pause(); // as a plain accepted socket: nothing is read until the job's pump starts
      resolve(t);
    });
  });
}
