/**
 * User and group names of this host (from /etc/passwd and /etc/group), for archives that
 * name owners in ACL entries instead of giving ids.
 */
import { readFileSync } from "node:fs";

function table(file: string): Map<string, number> {
  const map = new Map<string, number>();
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return map;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[0] && /^\d+$/.test(f[2]!)) map.set(f[0], Number(f[2]));
  }
  return map;
}

let users: Map<string, number> | undefined;
let groups: Map<string, number> | undefined;

export function hostIdOf(kind: "user" | "group", name: string): number | undefined {
  if (kind === "user") return (users ??= table("/etc/passwd")).get(name);
  return (groups ??= table("/etc/group")).get(name);
}
