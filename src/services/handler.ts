/**
 * The shape of the declarative handler tables: one table per NDMP interface
 * (connect.ts, config.ts, ...), message code -> handler, with the precondition that
 * matters before any handler runs (may it run before authentication?) declared beside it.
 */
import type { Header } from "../protocol/message.ts";
import type { Session } from "../server/session.ts";

export interface Handler {
  /** The spec allows this request before CONNECT_CLIENT_AUTH succeeded (digest §1.6). */
  preAuth?: boolean;
  /** Returns the reply body (internal model), or undefined for messages with no reply. */
  handle(session: Session, request: any, header: Header): unknown | Promise<unknown>;
}

export type HandlerTable = Record<number, Handler>;
