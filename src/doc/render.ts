/**
 * Renders the documentation data (commands.ts, config-keys.ts, environment.ts) as the terminal
 * help and as the man page ndmpd(8) in roff (man(7) macros). One source, two renderings.
 */
import { VERSION } from "../version.ts";
import { COMMANDS, commandDoc, EXAMPLES, EXIT_CODES, type CommandDoc, type OptionDoc } from "./commands.ts";
import { CONFIG_TABLES } from "./config-keys.ts";
import { NDMP_ENV, PROCESS_ENV } from "./environment.ts";

const WIDTH = 96;

/** Word-wraps a paragraph to WIDTH columns, each line prefixed by `indent`. */
function wrap(text: string, indent = "", width = WIDTH): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines;
}

function optionLines(items: OptionDoc[]): string[] {
  // "--long" options line up with the long half of "-s, --long".
  const heads = items.map((o) => `${o.flags.startsWith("--") ? "      " : "  "}${o.flags}`);
  const col = Math.min(30, Math.max(...heads.map((h) => h.length)) + 2);
  const out: string[] = [];
  for (const [i, o] of items.entries()) {
    const head = heads[i]!;
    const text = wrap(o.text, " ".repeat(col), WIDTH);
    if (head.length + 1 < col) out.push(head.padEnd(col) + (text[0] ?? "").trimStart(), ...text.slice(1));
    else out.push(head, ...text);
  }
  return out;
}

/** `ndmpd help`: the command list. */
export function mainHelp(): string {
  const shown = COMMANDS.filter((c) => !c.hidden);
  const w = Math.max(...shown.map((c) => c.name.length)) + 2;
  return [
    `ndmpd ${VERSION} — an NDMP server for Linux file servers`,
    "",
    "Usage: ndmpd [<command>] [options]       (no command: serve)",
    "",
    "Commands:",
    ...shown.map((c) => `  ${c.name.padEnd(w)}${c.summary}`),
    "",
    "Run 'ndmpd <command> --help' for a command's options, 'ndmpd man' for the manual.",
    "",
  ].join("\n");
}

/** `ndmpd CMD --help`. */
export function commandHelp(name: string): string | undefined {
  const c = commandDoc(name);
  if (!c) return undefined;
  const out = c.synopsis.map((s, i) => `${i === 0 ? "Usage: " : "       "}ndmpd ${s}`);
  for (const p of c.description) out.push("", ...wrap(p));
  if (c.options?.length) out.push("", ...optionLines(c.options));
  for (const s of c.sections ?? []) out.push("", `${s.title}:`, ...optionLines(s.items));
  return out.join("\n") + "\n";
}

// ---- roff ----

/** Escapes text for roff: backslashes, and a leading dot or quote that would start a request. */
function esc(s: string): string {
  return s.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/^([.'])/, "\\&$1");
}

function tp(tag: string, text: string): string[] {
  return [".TP", `.B ${esc(tag)}`, esc(text)];
}

function commandRoff(c: CommandDoc): string[] {
  const out = [".SS " + esc(c.name), ...c.synopsis.flatMap((s) => [".PP", `.B ndmpd ${esc(s)}`])];
  for (const p of c.description) out.push(".PP", esc(p));
  for (const o of c.options ?? []) out.push(...tp(o.flags, o.text));
  for (const s of c.sections ?? []) {
    out.push(".PP", `${esc(s.title)}:`);
    for (const o of s.items) out.push(...tp(o.flags, o.text));
  }
  return out;
}

/** The manual page ndmpd(8). */
export function manPage(date = "2026-12-01"): string {
  const out: string[] = [
    `.TH NDMPD 8 "${date}" "ndmpd ${VERSION}" "System Administration"`,
    ".SH NAME",
    "ndmpd \\- an NDMP v4/v3 server for Linux file servers",
    ".SH SYNOPSIS",
    ".B ndmpd",
    "[\\fIcommand\\fR] [\\fIoptions\\fR]",
    ".SH DESCRIPTION",
    esc(
      "ndmpd serves NDMP (the Network Data Management Protocol, versions 4 and 3) on TCP port 10000, so that backup software that speaks NDMP (Bareos, NetBackup, Commvault, Amanda, ndmjob) can back up and restore the file server in tar or dump format, to virtual tape libraries or real tape drives. It also runs backups and restores itself, as a small DMA.",
    ),
    ".SH COMMANDS",
  ];
  for (const c of COMMANDS) out.push(...commandRoff(c));
  out.push(".SH CONFIGURATION", esc("A TOML file (/etc/ndmpd/ndmpd.toml). Every mistake is reported with the file, line and key, exit code 2. 'ndmpd config example' prints a commented file with every key."));
  for (const t of CONFIG_TABLES) {
    out.push(`.SS ${t.array ? `[[${t.name}]]` : `[${t.name}]`}`, esc(t.text));
    for (const k of t.keys) out.push(...tp(`${t.name}.${k.key}`, `${k.text} (example: ${k.key} = ${k.value})`));
  }
  out.push(".SH ENVIRONMENT", ".SS The ndmpd process");
  for (const e of PROCESS_ENV) out.push(...tp(e.flags, e.text));
  out.push(".SS NDMP environment honoured by the data service", esc("Name/value pairs a DMA sends with DATA_START_BACKUP and DATA_START_RECOVER; DATA_GET_ENV returns them with the server's additions."));
  for (const e of NDMP_ENV) out.push(...tp(e.flags, e.text));
  out.push(".SH EXIT STATUS");
  for (const e of EXIT_CODES) out.push(...tp(e.flags, e.text));
  out.push(".SH FILES");
  for (const [f, t] of [
    ["/etc/ndmpd/ndmpd.toml", "the configuration"],
    ["/etc/ndmpd/ndmp.secret", "the password of user ndmp (mode 0600), made by the package"],
    ["/var/lib/ndmpd", "the state directory: catalog.sqlite, dump dates, virtual libraries"],
    ["/run/ndmpd/admin.sock", "the admin socket of the packaged service"],
  ] as const)
    out.push(...tp(f, t));
  out.push(".SH EXAMPLES");
  for (const e of EXAMPLES) out.push(...tp(e.flags, e.text));
  out.push(".SH SEE ALSO", "ndmjob(8), tar(1), restore(8), systemctl(1), journalctl(1)", "");
  return out.join("\n");
}
