import { describe, expect, it } from "vitest";
import { Message } from "../../../src/protocol/codes.ts";
import { decode, encode } from "../../../src/protocol/xdr/codec.ts";
import { v4ByCode, v4Messages } from "../../../src/protocol/xdr/v4.ts";
import { plain, rng, sample } from "../../helpers/sample.ts";

describe("v4 message schemas", () => {
  it("cover every message of the digest's table", () => {
    // Every v4 code in codes.ts except the v2/v3-only SCSI ones has a schema.
    const v3only = new Set<number>([Message.SCSI_SET_TARGET, Message.SCSI_RESET_BUS]);
    for (const code of Object.values(Message)) {
      if (v3only.has(code)) continue;
      expect(v4ByCode.has(code), `0x${code.toString(16)}`).toBe(true);
    }
    expect(v4Messages.length).toBe(Object.keys(Message).length - 2);
  });

  for (const m of v4Messages) {
    it(`${m.name} round-trips (request${m.reply ? " and reply" : ""})`, () => {
      const rand = rng(m.code);
      for (let i = 0; i < 25; i++) {
        for (const c of m.reply ? [m.request, m.reply] : [m.request]) {
          const v = sample(c, rand);
          const bytes = encode(c, v);
          expect(bytes.length % 4).toBe(0);
          expect(plain(decode(c, bytes))).toEqual(v);
          expect(encode(c, decode(c, bytes))).toEqual(bytes);
        }
      }
      if (m.reply) expect(decode(m.reply, encode(m.reply, m.reply.zero()))).toEqual(m.reply.zero());
    });
  }
});
