/**
 * The host's mounted filesystems, for CONFIG_GET_FS_INFO: /proc/self/mountinfo, minus the
 * pseudo filesystems nobody backs up, with statfs sizes and inode counts.
 */
import { readFileSync, statfsSync } from "node:fs";

export interface Mount {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  /** The filesystem's own options (the superblock's: btrfs user_subvol_rm_allowed, say). */
  superOptions: string;
}

/** Kernel and memory filesystems: not something an admin backs up through NDMP. */
const PSEUDO_FS = new Set([
  "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "securityfs",
  "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "pstore", "bpf", "autofs",
  "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "fuse.gvfsd-fuse", "fuse.portal",
  "squashfs", "nfsd", "overlay-pseudo", "rootfs", "devfs", "sockfs", "pipefs", "none",
]);

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo text (proc(5)): pure, for tests. */
export function parseMountinfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    if (left.length < 6 || right.length < 2) continue;
    out.push({
      mountPoint: unescapeMount(left[4]!),
      options: left[5]!,
      fsType: right[0]!,
      source: unescapeMount(right[1]!),
      superOptions: right[2] ?? "",
    });
  }
  return out;
}

export function isRealFilesystem(m: Mount): boolean {
  return !PSEUDO_FS.has(m.fsType) && !m.mountPoint.startsWith("/proc/") && !m.mountPoint.startsWith("/sys/");
}

/** Network filesystems: reported with LOCAL=n. */
export function isNetworkFs(fsType: string): boolean {
  return /^(nfs4?|cifs|smb3?|ceph|glusterfs|9p|fuse\.sshfs|afs)$/.test(fsType);
}

export interface FsUsage {
  totalSize?: bigint;
  usedSize?: bigint;
  availSize?: bigint;
  totalInodes?: bigint;
  usedInodes?: bigint;
}

export function usage(mountPoint: string): FsUsage {
  try {
    const st = statfsSync(mountPoint, { bigint: true });
    const bs = st.bsize;
    return {
      totalSize: st.blocks * bs,
      usedSize: (st.blocks - st.bfree) * bs,
      availSize: st.bavail * bs,
      // Some filesystems (btrfs, overlay on some kernels) report 0 inodes: that means "unknown".
      totalInodes: st.files > 0n ? st.files : undefined,
      usedInodes: st.files > 0n ? st.files - st.ffree : undefined,
    };
  } catch {
    return {};
  }
}

export function listFilesystems(mountinfoPath = "/proc/self/mountinfo"): Mount[] {
  let text: string;
  try {
    text = readFileSync(mountinfoPath, "utf8");
  } catch {
    return [];
  }
  const seen = new Set<string>();
  return parseMountinfo(text).filter((m) => {
    if (!isRealFilesystem(m) || seen.has(m.mountPoint)) return false;
    seen.add(m.mountPoint);
    return true;
  });
}
