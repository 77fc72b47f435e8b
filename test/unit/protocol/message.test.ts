import { describe, expect, it } from "vitest";
import { Message, MessageType } from "../../../src/protocol/codes.ts";
import { frameRecord } from "../../../src/protocol/framing.ts";
import { decodeHeader, encodeHeader, encodeMessage, wireV4 } from "../../../src/protocol/message.ts";

/** Hand-assembled vectors from the protocol digest (§1.2, §1.4, §2.3). */
describe("byte-for-byte vectors", () => {
  it("CONNECT_OPEN(4) is a 28-byte record with fragment word 0x8000001C", () => {
    const header = {
      sequence: 1,
      time_stamp: 0x5f5e1000,
      message_type: MessageType.REQUEST,
      message_code: Message.CONNECT_OPEN,
      reply_sequence: 0,
      error_code: 0,
    };
    const body = wireV4.encodePost(Message.CONNECT_OPEN, { protocol_version: 4 });
    const wire = Buffer.concat(frameRecord(encodeMessage(header, body)));
    expect(wire.toString("hex")).toBe(
      "8000001c" + "00000001" + "5f5e1000" + "00000000" + "00000900" + "00000000" + "00000000" + "00000004",
    );
    expect(decodeHeader(wire.subarray(4))).toEqual(header);
  });

  it("a TCP address 192.168.1.10:10000 with no env", () => {
    const bytes = wireV4.encodePost(Message.DATA_CONNECT, {
      addr: { addr_type: 1, tcp_addr: [{ ip_addr: 0xc0a8010a, port: 10000, addr_env: [] }] },
    });
    expect(bytes.toString("hex")).toBe("00000001" + "00000001" + "c0a8010a" + "00002710" + "00000000");
  });

  it("NOTIFY_CONNECTION_STATUS(CONNECTED, 4, \"\")", () => {
    const bytes = wireV4.encodePost(Message.NOTIFY_CONNECTION_STATUS, { reason: 0, protocol_version: 4, text_reason: "" });
    expect(bytes.toString("hex")).toBe("00000000" + "00000004" + "00000000");
  });

  it("CONFIG_GET_AUTH_ATTR reply for MD5 carries the 64-byte challenge with no length word", () => {
    const challenge = Buffer.alloc(64, 0xab);
    const bytes = wireV4.encodeReply(Message.CONFIG_GET_AUTH_ATTR, {
      error: 0,
      server_attr: { auth_type: 2, challenge },
    });
    expect(bytes.length).toBe(4 + 4 + 64);
    expect(bytes.subarray(0, 8).toString("hex")).toBe("0000000000000002");
  });

  it("CONNECT_CLIENT_AUTH TEXT ndmp/ndmp", () => {
    const bytes = wireV4.encodePost(Message.CONNECT_CLIENT_AUTH, {
      auth_data: { auth_type: 1, auth_text: { auth_id: "ndmp", auth_password: "ndmp" } },
    });
    expect(bytes.toString("hex")).toBe("00000001" + "00000004" + "6e646d70" + "00000004" + "6e646d70");
  });

  it("TAPE_GET_STATE reply puts `unsupported` before `error`", () => {
    const zero = wireV4.errorReply(Message.TAPE_GET_STATE, 6);
    const bytes = wireV4.encodeReply(Message.TAPE_GET_STATE, { ...zero, unsupported: 0x3f });
    expect(bytes.subarray(0, 8).toString("hex")).toBe("0000003f" + "00000006");
  });

  it("error replies are well-formed zero bodies", () => {
    const r = wireV4.errorReply(Message.CONFIG_GET_HOST_INFO, 9);
    expect(r.error).toBe(9);
    expect(wireV4.decodeReply(Message.CONFIG_GET_HOST_INFO, wireV4.encodeReply(Message.CONFIG_GET_HOST_INFO, r))).toEqual(r);
  });

  it("header encoding round-trips and rejects short records", () => {
    const h = { sequence: 0xffffffff, time_stamp: 1, message_type: 1, message_code: 0xa06, reply_sequence: 7, error_code: 25 };
    expect(decodeHeader(encodeHeader(h))).toEqual(h);
    expect(() => decodeHeader(Buffer.alloc(23))).toThrow();
  });
});
