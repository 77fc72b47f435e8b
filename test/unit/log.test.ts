import { describe, expect, it } from "vitest";
import { Logger } from "../../src/log.ts";

describe("logger", () => {
  it("writes one JSON object per line with context fields", () => {
    const lines: string[] = [];
    const log = new Logger("info", "json", {}, { write: (l) => lines.push(l) }).child({ session: 3 });
    log.info("authenticated", { user: "ndmp", n: 5n });
    log.debug("hidden");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "info", msg: "authenticated", session: 3, user: "ndmp", n: "5" });
  });

  it("writes a readable line in human format", () => {
    const lines: string[] = [];
    new Logger("debug", "human", {}, { write: (l) => lines.push(l) }).warn("bad thing", { why: "two words" });
    expect(lines[0]).toMatch(/^\S+Z WARN  bad thing why="two words"\n$/);
  });
});
