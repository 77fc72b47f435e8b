/** [[changer]] in the configuration: defaults, bound drives without a path, every refusal. */
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../../../src/config.ts";

const base = `[[user]]\nname = "u"\npassword = "p"\n`;
const parse = (s: string) => parseConfig(base + s, "t.toml", {});

describe("[[changer]]", () => {
  it("a virtual library with defaults and a bound drive that has no path", () => {
    const cfg = parse(`[[tape]]\nname = "vt0"\n[[changer]]\nname = "lib0"\npath = "/var/lib/ndmpd/lib0"\ndrives = ["vt0"]\n`);
    expect(cfg.changers).toEqual([
      {
        name: "lib0",
        type: "virtual",
        path: "/var/lib/ndmpd/lib0",
        slots: 24,
        importExport: 1,
        addresses: { mte: 0, se: 1000, ie: 10, dte: 500 },
        drives: ["vt0"],
        capacity: undefined,
        barcodePrefix: "NDMP",
        serial: "NDMPD-lib0",
      },
    ]);
    expect(cfg.tapes[0]).toMatchObject({ name: "vt0", path: undefined, changer: "lib0", serial: "NDMPD-vt0" });
  });

  it("every setting, and sg", () => {
    const cfg = parse(
      `[[tape]]\nname = "a"\n[[tape]]\nname = "b"\n[[changer]]\nname = "big"\npath = "/l"\nslots = 100\nimport_export = 4\ndrives = ["a", "b"]\ncapacity = "2GiB"\nbarcode_prefix = "ABC"\nserial = "S1"\nmte_address = 1\nse_address = 4096\nie_address = 16\ndte_address = 256\n` +
        `[[changer]]\nname = "real"\ntype = "sg"\npath = "/dev/sg3"\n`,
    );
    expect(cfg.changers[0]).toMatchObject({ slots: 100, importExport: 4, drives: ["a", "b"], capacity: 2 * 1024 ** 3, barcodePrefix: "ABC", serial: "S1", addresses: { mte: 1, se: 4096, ie: 16, dte: 256 } });
    expect(cfg.changers[1]).toMatchObject({ type: "sg", path: "/dev/sg3", drives: [] });
  });

  const refusals: Array<[string, RegExp]> = [
    [`[[changer]]\nname = "l"\npath = "rel"\n`, /changer\[0\]\.path: must be an absolute path/],
    [`[[changer]]\nname = "l"\npath = "/l"\ndrives = ["nope"]\n`, /no \[\[tape\]\] named nope/],
    [`[[tape]]\nname = "t"\npath = "/t.tape"\n[[changer]]\nname = "l"\npath = "/l"\ndrives = ["t"]\n`, /tape\[0\]\.path: t is a drive of changer l/],
    [`[[tape]]\nname = "t"\ntype = "st"\n[[changer]]\nname = "l"\npath = "/l"\ndrives = ["t"]\n`, /t is not a virtual tape/],
    [`[[tape]]\nname = "t"\n`, /tape\[0\]\.path: must be an absolute path/],
    [`[[changer]]\nname = "l"\npath = "/l"\nslots = 0\n`, /slots: must be an integer from 1 to 999/],
    [`[[changer]]\nname = "l"\npath = "/l"\nse_address = 5\n`, /element addresses overlap/],
    [`[[changer]]\nname = "l"\npath = "/l"\nse_address = 65530\n`, /run past 65535/],
    [`[[changer]]\nname = "l"\ntype = "sg"\npath = "/dev/sg0"\nslots = 4\n`, /only a virtual library/],
    [`[[changer]]\nname = "l"\npath = "/l"\nbarcode_prefix = "a b"\n`, /barcode_prefix/],
    [`[[changer]]\nname = "l"\npath = "/l"\n[[changer]]\nname = "l"\npath = "/m"\n`, /defined twice/],
    [`[[changer]]\nname = "l"\npath = "/l"\ncolour = 1\n`, /unknown key/],
    [`[[tape]]\nname = "t"\n[[changer]]\nname = "l"\npath = "/l"\ndrives = ["t"]\n[[changer]]\nname = "m"\npath = "/m"\ndrives = ["t"]\n`, /bound twice/],
  ];
  it.each(refusals)("refuses %j", (toml, why) => {
    expect(() => parse(toml)).toThrow(ConfigError);
    expect(() => parse(toml)).toThrow(why);
  });
});
