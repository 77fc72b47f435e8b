/**
 * The configuration file's documentation as data: one entry per table and per key, with the
 * value `ndmpd config example` writes. The man page's CONFIGURATION section and the example
 * file (the Debian package's /etc/ndmpd/ndmpd.toml) are rendered from it. To document a new key,
 * add it to its table here (test/unit/doc.test.ts fails for a key the parser knows and this
 * does not).
 */

export interface KeyDoc {
  key: string;
  /** The value as TOML, as the example file writes it. */
  value: string;
  text: string;
  /** Written commented out in the example (an alternative, or an optional setting). */
  commented?: boolean;
}

export interface TableDoc {
  /** "server", or "user" for the array of tables [[user]]. */
  name: string;
  array?: boolean;
  text: string;
  /** The whole table is commented out in the example. */
  commented?: boolean;
  keys: KeyDoc[];
}

export const CONFIG_TABLES: TableDoc[] = [
  {
    name: "server",
    text: "The listener and the server's limits.",
    keys: [
      { key: "listen", value: '["127.0.0.1:10000"]', text: 'addresses to listen on, "ADDR:PORT" or "[V6]:PORT" (default 127.0.0.1:10000 only); add "0.0.0.0:10000" to serve the network' },
      { key: "state_dir", value: '"/var/lib/ndmpd"', text: "catalog, dump dates, the embedded library (default /var/lib/ndmpd as root, else $XDG_STATE_HOME/ndmpd; $NDMPD_STATE_DIR overrides the default)" },
      { key: "data_port_range", value: '"10100-10199"', text: "ports for data connections (DATA_LISTEN, MOVER_LISTEN), for a firewall; default any", commented: true },
      {
        key: "data_peers",
        value: '["10.0.0.0/8", "::1/128"]',
        text: "CIDR blocks a data connection may come from (DATA_LISTEN, MOVER_LISTEN) or go to (DATA_CONNECT, MOVER_CONNECT); others are logged and dropped, the listen goes on. Default any address (three-way backups need the other server's); set it on shared networks",
        commented: true,
      },
      { key: "max_sessions", value: "64", text: "authenticated sessions at once; connections past this get NOTIFY_CONNECTION_STATUS REFUSED (unauthenticated ones are bounded apart, see [limits])" },
      { key: "versions", value: "[4, 3]", text: "NDMP versions offered, highest first" },
      { key: "max_message_size", value: '"32MiB"', text: "larger records are refused and the connection closed" },
      { key: "log_level", value: '"info"', text: "error | warn | info | debug" },
      { key: "log_format", value: '"human"', text: "human | json (one object per line, for a log shipper)" },
      { key: "auth_failure_delay_ms", value: "250", text: "delay before answering a failed login: slows password guessing" },
    ],
  },
  {
    name: "identity",
    text: "What CONFIG_GET_SERVER_INFO tells DMAs (some gate features on these strings).",
    keys: [
      { key: "vendor", value: '"ndmpd"', text: "vendor name", commented: true },
      { key: "product", value: '"ndmpd"', text: "product name", commented: true },
      { key: "revision", value: '"0.1.0"', text: "revision (default: the version)", commented: true },
    ],
  },
  {
    name: "auth",
    text: "How DMAs log in.",
    keys: [{ key: "methods", value: '["md5"]', text: 'any of "md5", "text" (clear text on the wire), "none" (no password: only if you really mean it)' }],
  },
  {
    name: "user",
    array: true,
    text: "A user a DMA logs in as; one table per user. NDMP's MD5 login needs the clear password on the server: keep it in a file only root reads. With no [[user]] at all, serve refuses to start (exit 2) unless NDMPD_PASSWORD is set (then user ndmp has that password) or auth.methods is [\"none\"].",
    keys: [
      { key: "name", value: '"ndmp"', text: "the user name" },
      { key: "password_file", value: '"/etc/ndmpd/ndmp.secret"', text: "a file holding the password (must not be readable by everyone)" },
      { key: "password_env", value: '"NDMP_PW"', text: "or: an environment variable holding it", commented: true },
      { key: "password", value: '"…"', text: "or: the password itself (the file must then not be readable by everyone)", commented: true },
      {
        key: "paths",
        value: '["/srv/projects"]',
        text: "scope: backup roots and restore destinations must lie inside these, symlinks resolved, checked before any byte moves (NOT_AUTHORIZED_ERR and a LOG_MESSAGE otherwise); default anywhere",
        commented: true,
      },
      { key: "devices", value: '["vt0", "lib0"]', text: "scope: the [[tape]] and [[changer]] names this user may open; default all", commented: true },
      { key: "read_only", value: "true", text: "scope: backups only, never a recovery (default false)", commented: true },
      {
        key: "cert_cn",
        value: '"backup-dma-1"',
        text: "NDMPS: a verified client certificate with this subject CN logs in as this user, without CONNECT_CLIENT_AUTH; a user with only cert_cn has no password",
        commented: true,
      },
    ],
  },
  {
    name: "server_auth",
    text: "Optional: what CONNECT_SERVER_AUTH answers with (the DMA authenticating the server).",
    commented: true,
    keys: [
      { key: "id", value: '"filer1"', text: "the server's id" },
      { key: "password_env", value: '"NDMPD_SERVER_SECRET"', text: "its secret: password, password_file or password_env, as for [[user]]" },
      { key: "password_file", value: '"/etc/ndmpd/server.secret"', text: "or: a file", commented: true },
      { key: "password", value: '"…"', text: "or: the secret itself", commented: true },
      {
        key: "allow_text",
        value: "false",
        text: "answer a TEXT CONNECT_SERVER_AUTH too, which sends the secret in clear (default false: MD5 only; over NDMPS the TLS channel protects it)",
        commented: true,
      },
    ],
  },
  {
    name: "tape",
    array: true,
    text: "A tape drive a DMA opens with TAPE_OPEN; one table per drive.",
    keys: [
      { key: "name", value: '"vt0"', text: "what a DMA opens (ndmjob -f vt0)" },
      { key: "type", value: '"virtual"', text: 'virtual (cartridge files) or st (a Linux tape drive, path = "/dev/nst0")', commented: true },
      { key: "path", value: '"/var/lib/ndmpd/vt0.tape"', text: "the cartridge file or device node; none for a drive of a virtual [[changer]]", commented: true },
      { key: "capacity", value: '"64GiB"', text: "virtual: the capacity of a cartridge created here", commented: true },
      { key: "no_rewind", value: "false", text: "virtual: keep the position across close and open, like /dev/nst", commented: true },
      { key: "serial", value: '"VT0-0001"', text: "reported in TAPE_INFO and by the library, so a DMA maps drive elements to drives", commented: true },
    ],
  },
  {
    name: "changer",
    array: true,
    text: "A media changer a DMA opens with SCSI_OPEN: a virtual SMC library of cartridge files, or a real one (type = \"sg\").",
    keys: [
      { key: "name", value: '"lib0"', text: "what a DMA opens (ndmjob -r lib0)" },
      { key: "type", value: '"virtual"', text: 'virtual or sg (path = "/dev/sg3")', commented: true },
      { key: "path", value: '"/var/lib/ndmpd/lib0"', text: "virtual: the library directory (cartridges <VOLTAG>.tape and library.json); sg: the device node" },
      { key: "slots", value: "4", text: "storage slots (virtual)" },
      { key: "import_export", value: "1", text: "import/export elements (virtual)" },
      { key: "drives", value: '["vt0"]', text: "the bound [[tape]] drives, in element order (virtual)" },
      { key: "autoload", value: "true", text: "at the library's first start, load slot n into drive n, so the first backup needs no load (virtual; default false)" },
      { key: "capacity", value: '"64GiB"', text: "the capacity of the cartridges created at first start (virtual)", commented: true },
      { key: "barcode_prefix", value: '"NDMP"', text: "volume tags are PREFIX + three digits + L8 (virtual)", commented: true },
      { key: "serial", value: '"LIB0-0001"', text: "the library's serial number", commented: true },
      { key: "mte_address", value: "0", text: "first element address of the robot (virtual)", commented: true },
      { key: "se_address", value: "1000", text: "first element address of the slots (virtual)", commented: true },
      { key: "ie_address", value: "10", text: "first element address of the import/export elements (virtual)", commented: true },
      { key: "dte_address", value: "500", text: "first element address of the drives (virtual)", commented: true },
    ],
  },
  {
    name: "backup",
    text: "Defaults of backup jobs.",
    keys: [
      {
        key: "snapshot",
        value: '"auto"',
        text: "SNAPSHOT of a job that sends none: auto (a snapshot where the filesystem has a method, btrfs or a [[snapshot]] hook, else the live tree with a warning), y (the same, but a snapshot that cannot be made fails the job), n (the live tree), required (no method: the job is refused)",
      },
    ],
  },
  {
    name: "snapshot",
    array: true,
    text: "Snapshot commands for filesystems without a built-in method (LVM thin, ZFS, XFS on LVM, a SAN); the first whose path matches FILESYSTEM is used, before btrfs. Run without a shell; {path}, {name} and {dir} in the arguments (and NDMPD_SNAPSHOT_PATH, _NAME, _DIR in the environment) are FILESYSTEM, the snapshot's name and the directory create printed.",
    commented: true,
    keys: [
      { key: "path", value: '"/srv/db{,/**}"', text: "a pattern (picomatch) matched against FILESYSTEM" },
      { key: "create", value: '["/usr/local/sbin/db-snap", "create", "{path}", "{name}"]', text: "makes the snapshot and prints, as its last line, the directory where FILESYSTEM's snapshot can be read" },
      { key: "delete", value: '["/usr/local/sbin/db-snap", "delete", "{name}", "{dir}"]', text: "deletes it (also at the next start, when the server died holding one)" },
      { key: "timeout", value: "60", text: "seconds each command may take (1-3600)" },
    ],
  },
  {
    name: "admin",
    text: "The local admin socket that 'ndmpd sessions' and 'ndmpd kill-session' use (no NDMP port is opened for it).",
    keys: [
      { key: "socket", value: '"/run/ndmpd/admin.sock"', text: "the Unix socket (default STATE_DIR/admin.sock); mode 0600, or 0660 with group (whose members must also be able to enter its directory)" },
      { key: "group", value: '"backup"', text: "a group whose members may also use it (default: root only)", commented: true },
    ],
  },
  {
    name: "tls",
    text: "NDMPS: an optional TLS listener (TLS 1.2 and later) beside the plain one, with its own port; DMAs connect with TLS there, ndmpd's CLI with --tls.",
    commented: true,
    keys: [
      { key: "listen", value: '["0.0.0.0:30000"]', text: "addresses of the TLS listener (ONTAP's NDMPS port is 30000)" },
      { key: "cert", value: '"/etc/ndmpd/tls/server.pem"', text: "the server's certificate (PEM, with its chain)" },
      { key: "key", value: '"/etc/ndmpd/tls/server.key"', text: "its private key (PEM; must not be readable by everyone)" },
      { key: "client_ca", value: '"/etc/ndmpd/tls/clients-ca.pem"', text: "ask clients for a certificate and verify it against these CAs (mutual TLS)", commented: true },
      { key: "require_client_cert", value: "true", text: "refuse a connection without a valid client certificate (needs client_ca; default false)", commented: true },
      {
        key: "peer_ca",
        value: '"/etc/ndmpd/tls/ndmp-servers-ca.pem"',
        text: "offer the NDMPD_DATA_TLS extension (class 0x2dd0): a DMA that selects it on both servers' sessions gets data connections in TLS, each side presenting its cert and verifying the other's against these CAs",
        commented: true,
      },
      { key: "handshake_timeout_ms", value: "10000", text: "a connection that has not finished its TLS handshake by then (plain NDMP, say) is closed", commented: true },
    ],
  },
  {
    name: "metrics",
    text: "An optional HTTP listener serving Prometheus metrics at /metrics (off unless listen is set).",
    commented: true,
    keys: [{ key: "listen", value: '"127.0.0.1:9610"', text: "ADDR:PORT of the metrics listener" }],
  },
  {
    name: "limits",
    text: "What a hostile, slow or broken peer may hold; each limit is logged when it acts. The defaults are safe: change them only to loosen them for a known peer.",
    keys: [
      { key: "auth_timeout_s", value: "30", text: "seconds a connection has to authenticate before it is closed" },
      { key: "preauth_max_message_size", value: '"64KiB"', text: "larger records before authentication close the connection (max_message_size applies after)" },
      { key: "max_unauthenticated", value: "32", text: "unauthenticated connections at once, in total; past it a connection is refused (they never take the slots of max_sessions)" },
      { key: "max_unauthenticated_per_source", value: "8", text: "unauthenticated connections at once from one source address" },
      { key: "auth_failure_delay_max_ms", value: "10000", text: "after each failed login from an address the delay doubles from server.auth_failure_delay_ms up to this; a success resets it" },
      { key: "idle_timeout_s", value: "0", text: "close an authenticated session with no job after this many silent seconds (0: never)" },
      { key: "max_nlist", value: "1000000", text: "entries of a recovery's nlist; more are refused with ILLEGAL_ARGS (max_message_size bounds it too: about 60 bytes an entry)" },
    ],
  },
];

/** The top-level tables the parser knows, from the documentation. */
export function documentedTables(): string[] {
  return CONFIG_TABLES.map((t) => t.name);
}

/** A commented configuration file with every key: `ndmpd config example`. */
export function renderExample(version: string): string {
  const out: string[] = [
    `# /etc/ndmpd/ndmpd.toml — configuration of ndmpd ${version} (see ndmpd(8); 'ndmpd config check' validates it)`,
    "# Lines starting with # are defaults or alternatives: remove the # to use them.",
    "",
  ];
  for (const t of CONFIG_TABLES) {
    const c = t.commented ? "# " : "";
    out.push(`# ${t.text}`);
    out.push(`${c}${t.array ? `[[${t.name}]]` : `[${t.name}]`}`);
    for (const k of t.keys) {
      const kc = t.commented || k.commented ? "# " : "";
      out.push(`${kc}${k.key} = ${k.value}`.padEnd(48) + `  # ${k.text}`);
    }
    out.push("");
  }
  return out.join("\n");
}
