/**
 * The command line's documentation as data: one entry per command. `ndmpd help`, every
 * `ndmpd CMD --help` and the man page ndmpd(8) are rendered from it (src/doc/render.ts), so
 * they never disagree. To document a new command or option, add it here.
 */
import { DEFAULT_PORT } from "../config.ts";
import { DEFAULT_RECORD_SIZE } from "../dma/jobs.ts";

export interface OptionDoc {
  /** As written in the help: "-t, --tape NAME". */
  flags: string;
  text: string;
}

export interface CommandDoc {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage lines, each without the leading "ndmpd ". */
  synopsis: string[];
  /** Paragraphs. */
  description: string[];
  options?: OptionDoc[];
  /** Extra blocks (sub-commands, notes) shown after the options: a title and its lines. */
  sections?: Array<{ title: string; items: OptionDoc[] }>;
  /** Not in the command list (aliases of others). */
  hidden?: boolean;
}

const CONFIG_OPT: OptionDoc = { flags: "-c, --config FILE", text: "configuration (default $NDMPD_CONFIG, else /etc/ndmpd/ndmpd.toml when it exists, else the embedded defaults)" };
/** NDMPS for the commands that connect to servers. */
const TLS_OPTS = [
  { flags: "--tls", text: "connect with NDMPS (TLS 1.2 or later) and verify the server's certificate and name (an IP address must be in its subjectAltName)" },
  { flags: "--tls-ca FILE", text: "PEM CA certificates to verify the server against (default: the system's)" },
  { flags: "--tls-cert FILE, --tls-key FILE", text: "a client certificate and its key, for a server that asks for one (its CN may log you in as a user)" },
];
const JSON_OPT: OptionDoc = { flags: "--json", text: "one JSON object per line (start, progress, end)" };
const SLOT_OPT: OptionDoc = { flags: "--slot N", text: "first load slot N of the drive's [[changer]] into the drive" };
const TAPE_OPT: OptionDoc = { flags: "-t, --tape NAME", text: "the [[tape]] drive (default: the only one, e.g. the embedded vt0)" };

export const COMMANDS: CommandDoc[] = [
  {
    name: "serve",
    summary: `run the NDMP server (default port ${DEFAULT_PORT})`,
    synopsis: ["serve [--config FILE] [--listen ADDR:PORT]... [--log-level L] [--log-format F]"],
    description: [
      `Runs the NDMP server. Without --config it runs on safe embedded defaults: it listens on 127.0.0.1:${DEFAULT_PORT} only, with one user 'ndmp' whose password is $NDMPD_PASSWORD, or a random one printed once at start-up, and the embedded virtual library lib0 with drive vt0 (cartridges under the state directory, created on first use).`,
      "SIGTERM or SIGINT tells every open session (NOTIFY_CONNECTION_STATUS SHUTDOWN) and exits. The admin socket (ndmpd sessions, ndmpd kill-session) and the metrics listener start with the server.",
    ],
    options: [
      { flags: "-c, --config FILE", text: "TOML configuration file (default: the embedded defaults)" },
      { flags: "-l, --listen ADDR:PORT", text: "address to listen on (repeatable; IPv6 as [ADDR]:PORT); overrides the file" },
      { flags: "--log-level L", text: "error | warn | info | debug (default info)" },
      { flags: "--log-format F", text: "human | json (default human)" },
    ],
  },
  {
    name: "query",
    summary: "ask an NDMP server what it offers (like ndmjob -q)",
    synopsis: ["query HOST[:PORT] --user U [--password P] [--auth md5|text] [--version 4] [--tls]"],
    description: ["Connects to an NDMP server, authenticates and prints what the CONFIG requests return. The password may also come from $NDMPD_PASSWORD."],
    options: [
      { flags: "-u, --user U", text: "user name" },
      { flags: "-p, --password P", text: "password (default: $NDMPD_PASSWORD)" },
      { flags: "-a, --auth M", text: "md5 (default) or text" },
      { flags: "--version N", text: "protocol version to open (default: the server's offer)" },
      { flags: "--json", text: "print the raw replies as JSON" },
      ...TLS_OPTS,
    ],
  },
  {
    name: "changer",
    summary: "show and move cartridges of a configured tape library (like mtx)",
    synopsis: ["changer [--config FILE] [--changer NAME] status|load SLOT [DRIVE]|unload [DRIVE] [SLOT]|move FROM TO"],
    description: ["Operates a [[changer]] of the configuration directly, in this process, with the same SCSI commands a DMA sends. A virtual library can only be used while no server holds it."],
    options: [CONFIG_OPT, { flags: "-n, --changer NAME", text: "which [[changer]] (default: the first one)" }],
    sections: [
      {
        title: "Commands",
        items: [
          { flags: "status | inventory", text: "list drives, slots and import/export elements with volume tags" },
          { flags: "load SLOT [DRIVE]", text: "slot (1-based, as mtx counts) -> drive (0-based, default 0)" },
          { flags: "unload [DRIVE] [SLOT]", text: "drive -> SLOT, default the slot it came from (or the first empty one)" },
          { flags: "move FROM TO", text: "any element -> any element, by element address (see 'status')" },
        ],
      },
    ],
  },
  {
    name: "backup",
    summary: "back up a directory to a drive (a local job, no DMA needed)",
    synopsis: ["backup PATH [--tape NAME] [options]"],
    description: [
      "Backs up the directory PATH to the drive, appending to the cartridge in it: a label record and the backup image, each its own tape file. The file history goes to the catalog (STATE_DIR/catalog.sqlite) so that restores of single paths can seek straight to them.",
      "When the cartridge fills and the drive is in a [[changer]], the backup goes on on the next usable cartridge: the next occupied slot after the one the full cartridge came from, in slot order and wrapping around to slot 1, holding a cartridge that is not already part of this backup and is blank or ndmpd's with room for a label (another program's tape, or a full one, is skipped, and the progress says why). The full cartridge goes back to its slot; the next one gets, after its last backup, a label naming the backup, the part number and where the part starts in the image, then the rest of the image. The catalog records each cartridge in order ('ndmpd list' shows them) and 'ndmpd recover' loads them itself. With no library, or no usable cartridge left, the backup fails, says why, and is cut off every cartridge it reached.",
    ],
    options: [
      TAPE_OPT,
      CONFIG_OPT,
      { flags: "-f, --format F", text: "tar (default) or dump" },
      { flags: "-x, --exclude PAT", text: "leave out paths matching PAT (repeatable)" },
      { flags: "-L, --label L", text: "a name for this backup (default: format and date)" },
      { flags: "--level N", text: "0 (full, the default) to 31: what changed since the last backup of a lower level of PATH (recorded in STATE_DIR/dumpdates; see 'ndmpd dumpdates')" },
      {
        flags: "--snapshot y|n|auto|required",
        text: "back up from a snapshot of PATH (btrfs built in, or a [[snapshot]] hook) or not (the job's SNAPSHOT; default: [backup] snapshot of the configuration, auto); required fails when PATH has no snapshot method. The summary names the snapshot used",
      },
      SLOT_OPT,
      { flags: "--record-size N", text: `tape record size in bytes (default ${DEFAULT_RECORD_SIZE})` },
      JSON_OPT,
    ],
  },
  {
    name: "recover",
    summary: "restore a backup, or paths from it, from a drive",
    synopsis: ["recover --to DIR [--tape NAME] [--file N | --date D] [--only] [PATH...] [options]"],
    description: [
      "Restores backup N (default: the last one on the cartridge) into DIR: everything, or the PATHs given (paths inside the backup, relative to its root; a leading / is accepted). With the catalog's offsets the selected paths are read by direct access; without, sequentially.",
      "An incremental (level > 0) is restored as its chain: the level 0 it builds on, then each later backup of a lower level it depends on, then it, in order, into DIR, which ends up as the tree was at that backup (files deleted in between are deleted).",
      "A backup that spans cartridges of the library is restored from them in order, loaded by volume tag from wherever they are in the library (the catalog knows them); selected paths start on the cartridge holding the first of them. The drive may hold any cartridge of it: the last one, as the backup left it, leads to the first.",
    ],
    options: [
      TAPE_OPT,
      { flags: "-n, --file N", text: "the backup number on the cartridge (see 'ndmpd list')" },
      { flags: "--date D", text: "the last backup made at or before D (ISO 8601, e.g. 2026-12-03T08:00)" },
      { flags: "--only", text: "restore backup N alone, not its chain" },
      { flags: "-C, --to DIR", text: "where to restore (created if missing)" },
      CONFIG_OPT,
      { flags: "--slot N", text: "first load slot N of the drive's [[changer]] into the drive; repeated (--slot 1 --slot 2 ...), the cartridges of an image that spans them, in order: when the image goes on past one, the next is loaded and the restore continues (needs --tape-file)" },
      { flags: "--tape-file N", text: "an image another DMA wrote, with no ndmpd label: its tape file number on the (first) cartridge; with --format F (default tar) and --record-size N (default 10240)" },
      { flags: "--index FILE", text: "with --tape-file: the ndmjob index (ndmjob -I) of that image; the PATHs are then read by direct access at its offsets (tar, path-style history)" },
      JSON_OPT,
    ],
  },
  {
    name: "list",
    summary: "list the backups on a cartridge, or the entries of one",
    synopsis: ["list [--tape NAME] [--file N] [--config FILE] [--json]"],
    description: ["Lists the backups on the cartridge in the drive (from the catalog, or from the tape's labels when the catalog does not know it); with --file N, the entries of backup N."],
    options: [TAPE_OPT, { flags: "-n, --file N", text: "list the entries of backup N" }, CONFIG_OPT, SLOT_OPT, { flags: "--json", text: "one JSON object" }],
  },
  {
    name: "dumpdates",
    summary: "list the incremental records (dumpdates) of this host's backups",
    synopsis: ["dumpdates [PATH] [--config FILE] [--json]"],
    description: ["Lists the dumpdates records of this host (STATE_DIR/dumpdates): per filesystem, path and level, the start of the last backup that succeeded with UPDATE=y, from which the next backup of a higher level takes its changes. With PATH, only that backup root's records."],
    options: [CONFIG_OPT, { flags: "--json", text: "one JSON object" }],
  },
  {
    name: "catalog",
    summary: "'catalog rebuild': re-read a cartridge's labels and file history into the catalog",
    synopsis: ["catalog rebuild [--tape NAME] [--config FILE] [--json]"],
    description: ["Rebuilds the catalog's record of the cartridge in the drive from the tape alone: every label, and every backup's file history with its offsets (read back from the images).", "A backup whose image goes on on other cartridges of the drive's library (see 'ndmpd backup --help') is followed there: each later part is found by its label, loaded, read, and the span recorded; a later part found on the cartridge in the drive is rebuilt with its first cartridge instead."],
    options: [TAPE_OPT, CONFIG_OPT, SLOT_OPT, JSON_OPT],
  },
  {
    name: "remote",
    summary: "'remote backup|recover|copy|duplicate': drive other NDMP servers (ndmpd as a small DMA)",
    synopsis: [
      "remote backup PATH --data HOST[:PORT] [--tape HOST[:PORT]] --device NAME [options]",
      "remote recover --data HOST[:PORT] [--tape HOST[:PORT]] --device NAME --to DIR [PATH...] [options]",
      "remote copy SRC_HOST[:PORT]:/PATH DST_HOST[:PORT]:/PATH [--format F] [--level N] [--exclude PAT]... [--listen src|dst] [options]",
      "remote duplicate --from HOST[:PORT]/DRIVE --to HOST[:PORT]/DRIVE [--files N-M] [--slot N[,N...]] [--from-slot N] [--listen src|dst] [--overwrite] [options]",
    ],
    description: [
      "Runs a job on other NDMP servers, ndmpd acting as the DMA: the data agent (--data) backs up or restores its own files, the tape agent (--tape; default: the data agent itself) writes or reads drive NAME there, with a TCP data connection between them (LOCAL when they are one server). The tape layout and the catalog are those of 'ndmpd backup'.",
      "copy moves a tree from one server to another without the data passing through ndmpd (data migration, like ndmpcopy): the source's data service backs up PATH straight into the destination's data service, which recovers it into its PATH. One side listens (--listen, default the destination) and the other connects over TCP; when both are the same server, its two sessions are joined by an NDMP IPC connection instead. --level N copies only what changed since the source's last copy or backup of a lower level (its dumpdates), deletions included: a level 0 then level 1 copy brings the destination up to date.",
      "duplicate copies the tape files of the cartridge in one drive onto the cartridge in another (tape duplication), mover to mover: the source's mover reads each file and the destination's writes it, record for record with the same record size, each file ended by a filemark. On an ndmpd cartridge it copies whole backups (label and image); the copy's labels get a new media id per destination cartridge, and the catalog (--state-dir) records the copy with the original's file history, so either cartridge restores. A destination cartridge that fills up gets no partial backup: the next slot of --slot is loaded and the backup is written there. The two drives may be on one server (two sessions, IPC) or on two (TCP).",
    ],
    options: [
      { flags: "-D, --data HOST[:PORT]", text: `the data agent (default port ${DEFAULT_PORT})` },
      { flags: "-T, --tape HOST[:PORT]", text: "the tape agent" },
      { flags: "-d, --device NAME", text: "the drive at the tape agent" },
      { flags: "--data-user U", text: "(default ndmp)" },
      { flags: "--data-password P", text: "(default $NDMPD_DATA_PASSWORD or $NDMPD_PASSWORD)" },
      { flags: "--tape-user U", text: "(default ndmp)" },
      { flags: "--tape-password P", text: "(default $NDMPD_TAPE_PASSWORD or $NDMPD_PASSWORD)" },
      { flags: "--auth md5|text", text: "how to log in (default md5)" },
      { flags: "--state-dir DIR", text: "where the catalog is (default: ndmpd's state directory)" },
      { flags: "backup:", text: "-f/--format, -x/--exclude, -L/--label, --level, --snapshot, --record-size, --json as for 'ndmpd backup'" },
      { flags: "recover:", text: "-n/--file N, -C/--to DIR, --json; or, for an image another DMA wrote with no ndmpd label: --tape-file N (its tape file number), --format F, --record-size N (default 10240)" },
      { flags: "copy: -f, --format tar|dump", text: "the stream format between the two (default tar)" },
      { flags: "copy: --level N", text: "0 (default) copies everything; N > 0 what changed since the last lower level of that source path" },
      { flags: "copy: -x, --exclude PAT", text: "leave out what matches (as for 'ndmpd backup'); repeatable" },
      { flags: "copy: --listen src|dst", text: "the side that listens for the data connection (default dst)" },
      { flags: "copy: --src-user U, --src-password P", text: "the source's login (default ndmp, $NDMPD_SRC_PASSWORD or $NDMPD_PASSWORD)" },
      { flags: "copy: --dst-user U, --dst-password P", text: "the destination's login (default ndmp, $NDMPD_DST_PASSWORD or $NDMPD_PASSWORD)" },
      { flags: "copy: --auth md5|text, --json", text: "as above" },
      { flags: "duplicate: --from HOST[:PORT]/DRIVE", text: "the source drive (the drive name is what follows the first /, a path for ndmjob's simulated tapes)" },
      { flags: "duplicate: --to HOST[:PORT]/DRIVE", text: "the destination drive; its cartridge must be blank unless --overwrite" },
      { flags: "duplicate: --files N-M", text: "the source's tape files to copy (N, N-M or N-; default all); on an ndmpd cartridge, whole backups (even to odd)" },
      { flags: "duplicate: --slot N[,N...]", text: "the destination library's slots to load into the destination drive, in order: the first before the job, the next each time a cartridge is full" },
      { flags: "duplicate: --from-slot N", text: "load this slot of the source's library into the source drive first" },
      { flags: "duplicate: --listen src|dst", text: "the mover that listens for the data connection (default dst)" },
      { flags: "duplicate: --overwrite", text: "write over a destination cartridge that is not blank" },
      { flags: "duplicate: --state-dir DIR, --src-user, --src-password, --dst-user, --dst-password, --auth, --json", text: "as for copy and the other remote jobs" },
      ...TLS_OPTS,
    ],
  },
  {
    name: "config",
    summary: "'config check [FILE]': validate and print the configuration; 'config example'",
    synopsis: ["config check [FILE] [--json]", "config example"],
    description: [
      "check reads FILE (default $NDMPD_CONFIG, else /etc/ndmpd/ndmpd.toml when it exists, else the embedded defaults), lists every problem it finds (exit 2), and otherwise prints the effective configuration with every default filled in and every secret masked.",
      "example prints a commented configuration file with every key; the Debian package installs it as /etc/ndmpd/ndmpd.toml.",
    ],
    options: [{ flags: "--json", text: "check: print the effective configuration as JSON" }],
  },
  {
    name: "sessions",
    summary: "list the running server's sessions (through its admin socket)",
    synopsis: ["sessions [--config FILE] [--socket PATH] [--json]"],
    description: [
      "Asks the running server, over its local admin socket, for its sessions: id, peer, user, protocol version, data and mover state, the job (backup or recover, format, path), bytes moved, the current rate, the path being read or written, and the devices the session holds. Only root, or members of [admin] group, can reach the socket.",
    ],
    options: [CONFIG_OPT, { flags: "-s, --socket PATH", text: "the admin socket (default: [admin] socket, or STATE_DIR/admin.sock)" }, { flags: "--json", text: "print the sessions as JSON" }],
  },
  {
    name: "kill-session",
    summary: "end a session cleanly: halt its jobs, release its devices, tell the DMA",
    synopsis: ["kill-session N [--config FILE] [--socket PATH]"],
    description: [
      "Ends session N of the running server (see 'ndmpd sessions'): its data and mover jobs are aborted (the DMA gets NOTIFY_DATA_HALTED and NOTIFY_MOVER_HALTED), it is told with NOTIFY_CONNECTION_STATUS (SHUTDOWN) and the connection is closed, which releases its tape drive and changer.",
    ],
    options: [CONFIG_OPT, { flags: "-s, --socket PATH", text: "the admin socket" }],
  },
  {
    name: "version",
    summary: "print the version",
    synopsis: ["version"],
    description: ["Prints the version."],
  },
  {
    name: "help",
    summary: "print this help, or 'ndmpd help <command>'",
    synopsis: ["help [command]"],
    description: ["Prints the list of commands, or the help of one."],
  },
  {
    name: "man",
    summary: "print the manual page ndmpd(8) (roff)",
    synopsis: ["man"],
    description: ["Prints the manual page in roff, the same text as every --help: 'ndmpd man | man -l -'."],
  },
];

export function commandDoc(name: string): CommandDoc | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Exit codes, for the man page and the help. */
export const EXIT_CODES: OptionDoc[] = [
  { flags: "0", text: "done" },
  { flags: "1", text: "the job or the server failed (a runtime error)" },
  { flags: "2", text: "bad usage or a bad configuration (every problem is listed)" },
];

/** The examples of the man page. */
export const EXAMPLES: OptionDoc[] = [
  { flags: "ndmpd backup /srv/export", text: "back up to the only drive (with no configuration: the embedded library)" },
  { flags: "ndmpd list", text: "the backups on the cartridge in the drive" },
  { flags: "ndmpd recover --to /restore /docs", text: "restore one directory of the last backup" },
  { flags: "ndmpd config check /etc/ndmpd/ndmpd.toml", text: "validate a configuration and show what it means" },
  { flags: "ndmpd sessions", text: "what the running server is doing" },
  { flags: "ndmpd kill-session 3", text: "end session 3 and free its drive" },
  { flags: "ndmjob -c -D host:10000/4,ndmp,PW -T host:10000/4,ndmp,PW -f vt0 -B tar -C /srv", text: "a backup by a DMA" },
];
