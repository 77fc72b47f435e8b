import { describe, expect, it } from "vitest";
import { readNdmjobIndex } from "../../../src/dma/ndmjob-index.ts";

describe("readNdmjobIndex", () => {
  it("takes each DHf line's path (%XX unescaped, bytes kept) and fh_info; ignores the rest", () => {
    const text = [
      "##ndmjob -I",
      "##ndmjob -J",
      "CM 01 +0/960K@1000",
      "DE TYPE=tar",
      "DHf / UNIX d755 0 0 s4096 m1 a1 c1 @0",
      "DHf /My%20Docs/a%25b UNIX f644 0 0 s5 m1 a1 c1 @1536",
      "DHf /caf%E9 UNIX f644 0 0 s5 m1 a1 c1 @983040",
      "DHf /bad UNIX f644 no offset",
    ].join("\n");
    const m = readNdmjobIndex(text);
    expect([...m]).toEqual([
      ["/", 0n],
      ["/My Docs/a%b", 1536n],
      ["/caf\xe9", 983040n],
    ]);
  });
});
