/**
 * The backup formats the data service can run, by butype name. CONFIG_GET_BUTYPE_INFO
 * (butypes.ts) tells DMAs about them; this table is what actually runs.
 */
import { runTarBackup, type BackupOptions, type BackupResult } from "./backup.ts";
import { runTarRecover, type RecoverOptions, type RecoverResult } from "./recover.ts";
import { runDumpBackup } from "./dump-backup.ts";
import { runDumpRecover } from "./dump-recover.ts";

export interface FormatEngine {
  backup(opts: BackupOptions): Promise<BackupResult>;
  recover(opts: RecoverOptions): Promise<RecoverResult>;
  /** The file-history style the format produces for HIST=y ("file": FH_ADD_FILE, "dir": FH_ADD_DIR/NODE). */
  defaultHistory: "file" | "dir";
  /** The recovery can seek by fh_info (direct access) when given a StreamSource. */
  direct: boolean;
}

export const FORMAT_ENGINES: Record<string, FormatEngine> = {
  tar: { backup: runTarBackup, recover: runTarRecover, defaultHistory: "file", direct: true },
  // Direct access for dump: fh_info is each inode's TS_INODE offset (dump-recover.ts).
  dump: { backup: runDumpBackup, recover: runDumpRecover, defaultHistory: "dir", direct: true },
};
