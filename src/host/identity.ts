/**
 * Who this host is, for CONFIG_GET_HOST_INFO.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname, release, type } from "node:os";

export interface HostIdentity {
  hostname: string;
  osType: string;
  osVersion: string;
  hostId: string;
}

/**
 * A stable host id: the first 8 hex digits of /etc/machine-id (what systemd hosts keep for
 * life), else derived from the host name. illumos reports gethostid() the same way, as hex.
 */
export function hostId(): string {
  for (const f of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
    try {
      const id = readFileSync(f, "utf8").trim();
      if (/^[0-9a-f]{8,}$/i.test(id)) return id.slice(0, 8).toLowerCase();
    } catch {
      // try the next one
    }
  }
  return createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
}

export function hostIdentity(): HostIdentity {
  return { hostname: hostname(), osType: type(), osVersion: release(), hostId: hostId() };
}
