/**
 * CONNECT interface (digest §1.6, §1.7, §2.4): version negotiation and authentication.
 */
import { countAuthFailure } from "../metrics/metrics.ts";
import { setTimeout as sleep } from "node:timers/promises";
import type { AuthMethod } from "../config.ts";
import { AuthType, ErrorCode, Message, NdmpError } from "../protocol/codes.ts";
import type { AuthData } from "../protocol/xdr/v4.ts";
import { AuthThrottle, checkMd5, checkText, md5Digest } from "../server/auth.ts";
import { Refusal } from "../security/refusal.ts";
import type { Session } from "../server/session.ts";
import type { HandlerTable } from "./handler.ts";

const methodOf: Record<number, AuthMethod | undefined> = {
  [AuthType.NONE]: "none",
  [AuthType.TEXT]: "text",
  [AuthType.MD5]: "md5",
};

/** Failed logins per source address: each one from an address waits twice as long as the last. */
const throttle = new AuthThrottle();

export function offeredAuthTypes(methods: AuthMethod[]): number[] {
  const code: Record<AuthMethod, number> = { none: AuthType.NONE, text: AuthType.TEXT, md5: AuthType.MD5 };
  return methods.map((m) => code[m]);
}

function openVersion(s: Session, req: { protocol_version: number }): { error: number } {
  if (s.version !== undefined) {
    throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, `version already fixed at ${s.version}`);
  }
  if (!s.config.versions.includes(req.protocol_version)) {
    throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `version ${req.protocol_version} is not offered`);
  }
  s.version = req.protocol_version;
  s.log.debug("protocol version fixed", { version: s.version });
  return { error: ErrorCode.NO_ERR };
}

async function clientAuth(s: Session, req: { auth_data: AuthData }): Promise<{ error: number }> {
  const data = req.auth_data;
  const method = methodOf[data.auth_type];
  if (!method || !s.config.authMethods.includes(method)) {
    throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `auth type ${data.auth_type} is not offered`);
  }
  let user = "";
  let ok: boolean;
  if (method === "text") {
    user = data.auth_text.auth_id.toString("utf8");
    ok = checkText(s.config.users, data.auth_text.auth_id, data.auth_text.auth_password);
  } else if (method === "md5") {
    user = data.auth_md5.auth_id.toString("utf8");
    ok = checkMd5(s.config.users, data.auth_md5.auth_id, data.auth_md5.auth_digest, s.md5Challenge);
    // A challenge answers one attempt: a second guess needs a fresh GET_AUTH_ATTR.
    s.md5Challenge = undefined;
  } else {
    ok = true;
  }
  if (!ok) {
    countAuthFailure(method);
    const delayMs = throttle.failed(s.source, s.config.authFailureDelayMs, s.config.limits.authFailureDelayMaxMs);
    s.log.warn("authentication failed", { method, user, source: s.source, failures: throttle.count(s.source), delay_ms: delayMs });
    if (delayMs > 0) await sleep(delayMs);
    throw new Refusal(ErrorCode.NOT_AUTHORIZED_ERR, "wrong user or password", { user });
  }
  throttle.succeeded(s.source);
  if (!s.authenticate(user)) throw new NdmpError(ErrorCode.NOT_AUTHORIZED_ERR, "too many sessions");
  s.log.info("authenticated", { method, user });
  return { error: ErrorCode.NO_ERR };
}

function serverAuth(s: Session, req: { client_attr: { auth_type: number; challenge?: Buffer } }) {
  const sa = s.config.serverAuth;
  if (!sa) throw new NdmpError(ErrorCode.NOT_SUPPORTED_ERR, "no server credentials configured");
  const attr = req.client_attr;
  if (attr.auth_type === AuthType.MD5 && attr.challenge) {
    return {
      error: ErrorCode.NO_ERR,
      server_result: { auth_type: AuthType.MD5, auth_md5: { auth_id: sa.id, auth_digest: md5Digest(sa.password, attr.challenge) } },
    };
  }
  // TEXT would send the secret in clear: only inside TLS, or where the configuration says so.
  if (attr.auth_type === AuthType.TEXT && !sa.allowText && !s.secure) {
    throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "TEXT server authentication sends the secret in clear; use MD5 (or set server_auth.allow_text)");
  }
  if (attr.auth_type === AuthType.TEXT) {
    return {
      error: ErrorCode.NO_ERR,
      server_result: { auth_type: AuthType.TEXT, auth_text: { auth_id: sa.id, auth_password: sa.password } },
    };
  }
  throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `auth type ${attr.auth_type} is not offered`);
}

export const connectHandlers: HandlerTable = {
  [Message.CONNECT_OPEN]: { preAuth: true, handle: openVersion },
  [Message.CONNECT_CLIENT_AUTH]: { preAuth: true, handle: clientAuth },
  [Message.CONNECT_CLOSE]: {
    preAuth: true,
    handle: (s) => {
      s.close("CONNECT_CLOSE");
      return undefined;
    },
  },
  // Legal only after the client authenticated (digest §1.7): no preAuth.
  [Message.CONNECT_SERVER_AUTH]: { handle: serverAuth },
};
