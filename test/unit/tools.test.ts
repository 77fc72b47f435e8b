import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DUMPINSPECT, SHARED_DUMPINSPECT, VENDORED_DUMPINSPECT } from "../helpers/dumpinspect.ts";

describe("test tools carried in the repository", () => {
  it("dumpinspect.py is there", () => {
    expect(existsSync(DUMPINSPECT)).toBe(true);
  });

  // A clone without ../shared (CI's) has only the copy: there is nothing to compare it with, and
  // no test is registered, rather than one that is always skipped there.
  if (existsSync(SHARED_DUMPINSPECT)) {
    it("the copy in test/tools is the team's current one", () => {
      expect(readFileSync(VENDORED_DUMPINSPECT, "utf8")).toBe(readFileSync(SHARED_DUMPINSPECT, "utf8"));
    });
  }
});
