import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DUMPINSPECT, SHARED_DUMPINSPECT, VENDORED_DUMPINSPECT } from "../helpers/dumpinspect.ts";

describe("test tools carried in the repository", () => {
  it("dumpinspect.py is there, and the copy in test/tools is the team's current one", (ctx) => {
    expect(existsSync(DUMPINSPECT)).toBe(true);
    if (!existsSync(SHARED_DUMPINSPECT)) ctx.skip(); // a clone without ../shared: the copy is all there is
    expect(readFileSync(VENDORED_DUMPINSPECT, "utf8")).toBe(readFileSync(SHARED_DUMPINSPECT, "utf8"));
  });
});
