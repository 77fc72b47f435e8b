import { describe, expect, it } from "vitest";
import { isNetworkFs, isRealFilesystem, listFilesystems, parseMountinfo, usage } from "../../../src/host/mounts.ts";

const SAMPLE = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /proc rw,nosuid - proc proc rw
24 22 0:21 / /sys rw - sysfs sysfs rw
30 22 254:16 / /srv/my\\040share rw - xfs /dev/vdb1 rw
31 22 0:40 / /tmp rw - tmpfs tmpfs rw
32 22 0:41 / /mnt/nas ro - nfs4 nas:/export ro
`;

describe("mounted filesystems", () => {
  it("parses mountinfo, unescapes names and drops pseudo filesystems", () => {
    const all = parseMountinfo(SAMPLE);
    expect(all).toHaveLength(6);
    const real = all.filter(isRealFilesystem);
    expect(real.map((m) => m.mountPoint)).toEqual(["/", "/srv/my share", "/mnt/nas"]);
    expect(real[1]).toMatchObject({ fsType: "xfs", source: "/dev/vdb1" });
    expect(isNetworkFs("nfs4")).toBe(true);
    expect(isNetworkFs("ext4")).toBe(false);
  });

  it("reads this host's filesystems with statfs sizes", () => {
    const list = listFilesystems();
    expect(list.length).toBeGreaterThan(0);
    const root = list.find((m) => m.mountPoint === "/");
    expect(root).toBeDefined();
    const u = usage("/");
    expect(u.totalSize! > 0n).toBe(true);
    expect(u.availSize! <= u.totalSize!).toBe(true);
  });
});
