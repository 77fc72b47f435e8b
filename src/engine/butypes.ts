/**
 * The backup methods this server offers (CONFIG_GET_BUTYPE_INFO), with the attributes and
 * default environment each one honours. The data service checks requests against this same
 * table, so what a DMA is told and what the server does cannot drift apart.
 */
import { ButypeAttr as A } from "../protocol/codes.ts";

export interface Butype {
  name: "tar" | "dump";
  attrs: number;
  defaultEnv: Array<[string, string]>;
}

// Names are bytes (Linux paths need not be UTF-8), so the UTF8 attributes are not claimed.
const commonEnv: Array<[string, string]> = [
  ["FILESYSTEM", ""],
  ["TYPE", ""],
  ["HIST", "n"],
  ["DIRECT", "n"],
  ["RECURSIVE", "y"],
  ["EXCLUDE", ""],
  ["PATHNAME_SEPARATOR", "/"],
  // Recovery: what to do with objects already there (y | n | newer), and where entries go.
  ["OVERWRITE", "y"],
  ["RECOVER_FULL_PATHS", "n"],
];

export const BUTYPES: Butype[] = [
  {
    name: "tar",
    attrs:
      A.BACKUP_FILELIST | A.RECOVER_FILELIST | A.BACKUP_DIRECT | A.RECOVER_DIRECT |
      // Incrementals carry GNU tar's directory listings; a recovery of one applies deletions.
      A.BACKUP_INCREMENTAL | A.RECOVER_INCREMENTAL |
      A.BACKUP_FH_FILE | A.RECOVER_FILEHIST | A.RECOVER_FH_FILE,
    defaultEnv: commonEnv
      .map(([k, v]) => [k, k === "TYPE" ? "tar" : v] as [string, string])
      .concat([["FILES", ""], ["LEVEL", "0"], ["UPDATE", "y"], ["IGNORE_CTIME", "n"], ["BASE_DATE", ""]]),
  },
  {
    name: "dump",
    attrs:
      A.RECOVER_FILELIST | A.BACKUP_DIRECT | A.RECOVER_DIRECT | A.BACKUP_INCREMENTAL | A.RECOVER_INCREMENTAL |
      A.BACKUP_FH_FILE | A.BACKUP_FH_DIR | A.RECOVER_FILEHIST | A.RECOVER_FH_DIR,
    defaultEnv: commonEnv
      .map(([k, v]) => [k, k === "TYPE" ? "dump" : v] as [string, string])
      .concat([["LEVEL", "0"], ["UPDATE", "y"], ["IGNORE_CTIME", "n"], ["BASE_DATE", ""]]),
  },
];

export function findButype(name: string): Butype | undefined {
  return BUTYPES.find((b) => b.name === name);
}
