/**
 * NDMP messages: the 24-byte header (identical in v2, v3 and v4) plus a body, and the
 * per-version codec that turns bodies into the internal model handlers use.
 */
import { MessageType } from "./codes.ts";
import { decode, encode, XdrError, type Codec } from "./xdr/codec.ts";
import { v4ByCode, type MessageSchema } from "./xdr/v4.ts";
import { wireV3 } from "./wire-v3.ts";

export const HEADER_SIZE = 24;

export interface Header {
  sequence: number;
  time_stamp: number;
  message_type: number;
  message_code: number;
  reply_sequence: number;
  error_code: number;
}

export interface NdmpMessage {
  header: Header;
  /** The decoded body in the internal model, or undefined when the header carries an error. */
  body?: any;
}

export function decodeHeader(record: Buffer): Header {
  if (record.length < HEADER_SIZE) throw new XdrError(`record of ${record.length} bytes is shorter than a header`);
  return {
    sequence: record.readUInt32BE(0),
    time_stamp: record.readUInt32BE(4),
    message_type: record.readUInt32BE(8),
    message_code: record.readUInt32BE(12),
    reply_sequence: record.readUInt32BE(16),
    error_code: record.readUInt32BE(20),
  };
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeUInt32BE(h.sequence >>> 0, 0);
  b.writeUInt32BE(h.time_stamp >>> 0, 4);
  b.writeUInt32BE(h.message_type, 8);
  b.writeUInt32BE(h.message_code >>> 0, 12);
  b.writeUInt32BE(h.reply_sequence >>> 0, 16);
  b.writeUInt32BE(h.error_code >>> 0, 20);
  return b;
}

/**
 * One protocol version on the wire. Handlers only ever see the internal model (the v4
 * shapes); a version's codec translates at this edge, so nothing above branches on the wire
 * version except where the spec's behaviour itself differs.
 */
export interface WireVersion {
  readonly version: number;
  schema(code: number): MessageSchema | undefined;
  /** Request (or post) body bytes -> internal model. Throws XdrError. */
  decodeRequest(code: number, body: Buffer): any;
  /** Reply body (internal model) -> bytes. */
  encodeReply(code: number, body: any): Buffer;
  /** Post body (internal model) -> bytes. */
  encodePost(code: number, body: any): Buffer;
  /** Reply bytes -> internal model (used by our own client). */
  decodeReply(code: number, body: Buffer): any;
  /** A zero reply body carrying `error`, for error replies. */
  errorReply(code: number, error: number): any;
}

function bodyCodec(s: MessageSchema | undefined, which: "request" | "reply", code: number): Codec<any> {
  const c = s?.[which];
  if (!c) throw new XdrError(`no ${which} body for message 0x${code.toString(16)}`);
  return c;
}

/** Version 4: the internal model is the v4 model, so the codec is the identity. */
export const wireV4: WireVersion = {
  version: 4,
  schema: (code) => v4ByCode.get(code),
  decodeRequest: (code, body) => decode(bodyCodec(v4ByCode.get(code), "request", code), body),
  encodeReply: (code, body) => encode(bodyCodec(v4ByCode.get(code), "reply", code), body),
  encodePost: (code, body) => encode(bodyCodec(v4ByCode.get(code), "request", code), body),
  decodeReply: (code, body) => decode(bodyCodec(v4ByCode.get(code), "reply", code), body),
  errorReply: (code, error) => {
    const reply = v4ByCode.get(code)?.reply;
    return reply ? { ...reply.zero(), error } : { error };
  },
};

/** The codec of a protocol version, or undefined for one we do not speak. */
export function wireFor(version: number): WireVersion | undefined {
  if (version === 4) return wireV4;
  if (version === 3) return wireV3;
  return undefined;
}

/** Builds the record bytes (header + body) of one message. */
export function encodeMessage(header: Header, body?: Buffer): Buffer {
  const h = encodeHeader(header);
  return body && body.length > 0 ? Buffer.concat([h, body]) : h;
}

export function isReply(h: Header): boolean {
  return h.message_type === MessageType.REPLY;
}
