/** Scopes: where a path leads (symlinks resolved, not-yet-existing tails kept), and the checks. */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../../src/protocol/codes.ts";
import { Refusal } from "../../../src/security/refusal.ts";
import { requireDevice, requireInScope, requireRecover, resolveForScope, within } from "../../../src/security/scope.ts";

const W = realpathSync(mkdtempSync(join(tmpdir(), "ndmpd-scope-")));
mkdirSync(join(W, "scope/sub"), { recursive: true });
mkdirSync(join(W, "outside"));
symlinkSync(join(W, "outside"), join(W, "scope/link"));
symlinkSync("sub", join(W, "scope/rel"));
afterAll(() => rmSync(W, { recursive: true, force: true }));

const B = (s: string) => Buffer.from(s);
const refusal = (fn: () => void): Refusal => {
  try {
    fn();
  } catch (e) {
    if (e instanceof Refusal) return e;
    throw e;
  }
  throw new Error("not refused");
};

describe("resolveForScope", () => {
  it("resolves symlinks in the existing part and keeps the part to be created", () => {
    expect(resolveForScope(B(`${W}/scope/sub`)).toString()).toBe(`${W}/scope/sub`);
    expect(resolveForScope(B(`${W}/scope/link/new/file`)).toString()).toBe(`${W}/outside/new/file`);
    expect(resolveForScope(B(`${W}/scope/rel/x`)).toString()).toBe(`${W}/scope/sub/x`);
    expect(resolveForScope(B(`${W}/scope/./sub//link`)).toString()).toBe(`${W}/scope/sub/link`);
    expect(resolveForScope(B("/")).toString()).toBe("/");
  });

  it("refuses a relative path and any ..", () => {
    expect(refusal(() => resolveForScope(B("scope"))).code).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(refusal(() => resolveForScope(B(`${W}/scope/missing/../../outside`))).code).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(refusal(() => resolveForScope(B(`${W}/scope/link/../x`))).code).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
  });

  it("names are bytes: a non-UTF-8 tail survives", () => {
    const p = Buffer.concat([B(`${W}/scope/`), Buffer.from([0xff, 0xfe])]);
    expect(resolveForScope(p).equals(p)).toBe(true);
  });
});

describe("within", () => {
  it("is the root itself or below it, on a component boundary", () => {
    expect(within(B("/a/b"), B("/a"))).toBe(true);
    expect(within(B("/a"), B("/a"))).toBe(true);
    expect(within(B("/ab"), B("/a"))).toBe(false);
    expect(within(B("/x"), B("/"))).toBe(true);
  });
});

describe("the checks", () => {
  const scope = { paths: [`${W}/scope`], devices: ["vt0"], readOnly: false };

  it("paths: inside passes; outside, or inside through a symlink that leads out, is NOT_AUTHORIZED", () => {
    expect(() => requireInScope(scope, "u", B(`${W}/scope/sub/new`), "restore to")).not.toThrow();
    expect(() => requireInScope(scope, "u", B(`${W}/scope`), "back up")).not.toThrow();
    const out = refusal(() => requireInScope(scope, "u", B(`${W}/outside`), "back up"));
    expect(out.code).toBe(ErrorCode.NOT_AUTHORIZED_ERR);
    expect(out.why).toBe(`user u may not back up ${W}/outside: outside its paths ${W}/scope`);
    expect(out.detail.paths).toEqual([`${W}/outside`]);
    const link = refusal(() => requireInScope(scope, "u", B(`${W}/scope/link/x`), "restore to"));
    expect(link.why).toContain(`(which leads to ${W}/outside/x)`);
    // No paths in the scope: anywhere.
    expect(() => requireInScope({ readOnly: false }, "u", B("/etc"), "back up")).not.toThrow();
    expect(() => requireInScope(undefined, "u", B("/etc"), "back up")).not.toThrow();
  });

  it("devices and read-only", () => {
    expect(() => requireDevice(scope, "u", "vt0")).not.toThrow();
    expect(refusal(() => requireDevice(scope, "u", "vt1")).detail.devices).toEqual(["vt1"]);
    expect(() => requireDevice({ readOnly: false }, "u", "vt1")).not.toThrow();
    expect(() => requireRecover(scope, "u", [])).not.toThrow();
    expect(refusal(() => requireRecover({ readOnly: true }, "u", [B("/r")])).why).toMatch(/read-only/);
  });
});
