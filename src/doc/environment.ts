/**
 * Environment variables, as data for the man page: those of the ndmpd process, and the NDMP
 * environment (DATA_START_BACKUP / DATA_START_RECOVER pairs) the data service honours. One
 * entry per variable; add new ones here.
 */
import type { OptionDoc } from "./commands.ts";

export const PROCESS_ENV: OptionDoc[] = [
  { flags: "NDMPD_PASSWORD", text: "with no configuration, or a file without [[user]]: the password of user ndmp (with no configuration and no NDMPD_PASSWORD a one-time one is printed; a file without users and without it is refused); for query and remote: the password to log in with" },
  { flags: "NDMPD_CONFIG", text: "the configuration file of the CLI's commands when --config is not given" },
  { flags: "NDMPD_STATE_DIR", text: "the default state directory (when the configuration does not set state_dir)" },
  { flags: "XDG_STATE_HOME", text: "not root: the state directory is $XDG_STATE_HOME/ndmpd (default ~/.local/state/ndmpd)" },
  { flags: "NDMPD_DATA_PASSWORD", text: "remote: the data agent's password" },
  { flags: "NDMPD_TAPE_PASSWORD", text: "remote: the tape agent's password" },
  { flags: "NDMPD_SRC_PASSWORD", text: "remote copy and duplicate: the source server's password" },
  { flags: "NDMPD_DST_PASSWORD", text: "remote copy and duplicate: the destination server's password" },
];

export const NDMP_ENV: OptionDoc[] = [
  { flags: "FILESYSTEM", text: "backup: the directory to back up (absolute); recover: the original root" },
  { flags: "PREFIX", text: "the same, when FILESYSTEM is not given; recover: the base of relative names" },
  { flags: "TYPE", text: "set by the server: the backup type (tar or dump)" },
  { flags: "LEVEL", text: "0 (full, default) to 31: an incremental against the most recent backup of a lower level in the state directory's dumpdates (tar and dump)" },
  { flags: "UPDATE", text: "y (default) records the backup in dumpdates for later incrementals, n does not" },
  { flags: "IGNORE_CTIME", text: "y: incrementals compare mtimes only; n (default): mtimes and ctimes" },
  { flags: "BASE_DATE", text: "token mode: 0 on a level 0 starts it, a DUMP_DATE of an earlier backup backs up what changed since it, -1 or absent: none; wins over LEVEL" },
  { flags: "HIST", text: "y: file history (the format's style), f: path style (FH_ADD_FILE), d: directory style (FH_ADD_DIR and FH_ADD_NODE), n (default): none" },
  { flags: "EXCLUDE", text: "patterns (comma separated, repeatable) of paths to leave out" },
  { flags: "FILES", text: "backup: only these paths (space separated, repeatable); a path with spaces is written with \\ before each space or inside double quotes (\\\" and \\\\ for a quote and a backslash)" },
  { flags: "DIRECT", text: "recover: y to read the selected paths by their fh_info offsets (direct access); set to y on every backup" },
  { flags: "RECURSIVE", text: "recover: y (default) restores a selected directory with its contents, n the directory alone" },
  { flags: "OVERWRITE", text: "recover: what to do with an object already at the destination: y (default) replace it, n keep it, newer replace it only with a newer copy (mtime); directories are merged; RESTORE_OVERWRITE (FluidFS's name) is the same" },
  { flags: "RESTORE_OVERWRITE", text: "recover: the same as OVERWRITE (FluidFS's name); OVERWRITE wins when both are sent" },
  { flags: "RECOVER_FULL_PATHS", text: "recover: y restores each nlist entry at its full original path under destination_path (destination_path/original_path, the directories on the way created), n (default) at destination_path (and name)" },
  { flags: "RECORD_SIZE", text: "the tape record size direct-access reads align to (set by the server on LOCAL backups)" },
  { flags: "PATHNAME_SEPARATOR", text: "set by the server: /" },
  { flags: "SNAPSHOT", text: "backup: y, n, auto or required (default: [backup] snapshot, auto): back up from a snapshot (btrfs built in, or a [[snapshot]] hook); DATA_GET_ENV returns what was done: btrfs:NAME, hook:NAME or none" },
  { flags: "DUMP_DATE", text: "set by the server on dump backups: the backup's date" },
];
