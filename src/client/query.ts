/**
 * `ndmpd query`: asks a server every CONFIG question and prints the answers, like
 * `ndmjob -q` does.
 */
import { AddrType, AuthType, FsInfoUnsupported, Message } from "../protocol/codes.ts";
import type { NdmpClient } from "./client.ts";

const names = (table: Record<string, number>, v: number) =>
  Object.entries(table).find(([, x]) => x === v)?.[0] ?? `#${v}`;
const text = (b: Buffer | string) => (typeof b === "string" ? b : b.toString("utf8"));

export interface QueryResult {
  lines: string[];
  /** Raw reply bodies, by message name, for programmatic use. */
  replies: Record<string, any>;
}

export async function runQuery(c: NdmpClient): Promise<QueryResult> {
  const replies: Record<string, any> = {};
  const ask = async (name: keyof typeof Message) => {
    try {
      replies[name] = (await c.request(Message[name])).body;
    } catch (e) {
      replies[name] = { failed: (e as Error).message };
    }
    return replies[name];
  };
  const lines: string[] = [];
  const out = (s: string) => lines.push(s);

  const host = await ask("CONFIG_GET_HOST_INFO");
  if (host.failed) out(`host info: ${host.failed}`);
  else {
    out(`Host ${text(host.hostname)}`);
    out(`  os         ${text(host.os_type)} ${text(host.os_vers)}`);
    out(`  hostid     ${text(host.hostid)}`);
  }
  const server = await ask("CONFIG_GET_SERVER_INFO");
  if (server.failed) out(`server info: ${server.failed}`);
  else {
    out(`Server`);
    out(`  vendor     ${text(server.vendor_name)}`);
    out(`  product    ${text(server.product_name)}`);
    out(`  revision   ${text(server.revision_number)}`);
    out(`  auths      (${server.auth_type.length}) ${server.auth_type.map((a: number) => `AUTH_${names(AuthType, a)}`).join(" ")}`);
  }
  const conn = await ask("CONFIG_GET_CONNECTION_TYPE");
  if (conn.failed) out(`connection types: ${conn.failed}`);
  else out(`  addr_types (${conn.addr_types.length}) ${conn.addr_types.map((a: number) => `ADDR_${names(AddrType, a)}`).join(" ")}`);

  const bu = await ask("CONFIG_GET_BUTYPE_INFO");
  if (bu.failed) out(`butype info: ${bu.failed}`);
  else
    for (const b of bu.butype_info) {
      out(`Backup type ${text(b.butype_name)}`);
      out(`  attrs      0x${b.attrs.toString(16)}`);
      for (const e of b.default_env) out(`  set        ${text(e.name)}=${text(e.value)}`);
    }
  const fs = await ask("CONFIG_GET_FS_INFO");
  if (fs.failed) out(`fs info: ${fs.failed}`);
  else
    for (const f of fs.fs_info) {
      out(`File system ${text(f.fs_logical_device)}`);
      out(`  physdev    ${text(f.fs_physical_device)}`);
      out(`  type       ${text(f.fs_type)}`);
      out(`  status     ${text(f.fs_status)}`);
      const size = (v: bigint, bit: number) => ((f.unsupported & bit) !== 0 ? "unknown" : v.toString());
      out(`  space      total ${size(f.total_size, FsInfoUnsupported.TOTAL_SIZE)} used ${size(f.used_size, FsInfoUnsupported.USED_SIZE)} avail ${size(f.avail_size, FsInfoUnsupported.AVAIL_SIZE)}`);
      out(`  inodes     total ${size(f.total_inodes, FsInfoUnsupported.TOTAL_INODES)} used ${size(f.used_inodes, FsInfoUnsupported.USED_INODES)}`);
      for (const e of f.fs_env) out(`  set        ${text(e.name)}=${text(e.value)}`);
    }
  for (const [name, field, label] of [
    ["CONFIG_GET_TAPE_INFO", "tape_info", "Tape"],
    ["CONFIG_GET_SCSI_INFO", "scsi_info", "SCSI"],
  ] as const) {
    const r = await ask(name);
    if (r.failed) {
      out(`${label} devices: ${r.failed}`);
      continue;
    }
    if (r[field].length === 0) out(`${label} devices: none`);
    for (const d of r[field]) {
      out(`${label} device model ${text(d.model)}`);
      for (const cap of d.caplist) {
        out(`  device     ${text(cap.device)} attr 0x${cap.attr.toString(16)}`);
        for (const e of cap.capability) out(`  set        ${text(e.name)}=${text(e.value)}`);
      }
    }
  }
  return { lines, replies };
}
