import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { closeNoted, forgetFd, LEDGER_SLOTS, newLedger, noteFd } from "../../../src/engine/fd-ledger.ts";

const isOpen = (fd: number) => {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

describe("fd-ledger", () => {
  it("closes what is still noted, and only that", () => {
    const l = newLedger();
    const a = fs.openSync("/dev/null", "r");
    const b = fs.openSync("/dev/null", "r");
    expect(noteFd(l, a)).toBe(true);
    expect(noteFd(l, b)).toBe(true);
    forgetFd(l, b); // the worker closes b itself
    expect(closeNoted(l, (fd) => fs.closeSync(fd))).toBe(1);
    expect(isOpen(a)).toBe(false);
    expect(isOpen(b)).toBe(true);
    fs.closeSync(b);
    expect(closeNoted(l, (fd) => fs.closeSync(fd))).toBe(0);
  });

  it("a full ledger refuses a descriptor (the caller then does not keep it), and fd 0 is a real number", () => {
    const l = newLedger();
    for (let i = 0; i < LEDGER_SLOTS; i++) expect(noteFd(l, 1000 + i)).toBe(true);
    expect(noteFd(l, 5)).toBe(false);
    forgetFd(l, 1000);
    expect(noteFd(l, 0)).toBe(true);
    const closed: number[] = [];
    expect(closeNoted(l, (fd) => closed.push(fd))).toBe(LEDGER_SLOTS);
    expect(closed).toContain(0);
    expect(closed).not.toContain(1000);
  });
});
