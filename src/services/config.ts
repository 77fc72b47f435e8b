/**
 * CONFIG interface (digest §2.5): what this server is, which auth, connection kinds,
 * backup methods, filesystems and devices it offers.
 */
import type { Config } from "../config.ts";
import { BUTYPES } from "../engine/butypes.ts";
import { snapshotMethod } from "../snapshot/index.ts";
import { hostIdentity } from "../host/identity.ts";
import { isNetworkFs, listFilesystems, usage } from "../host/mounts.ts";
import { ALL1, AddrType, AuthType, ErrorCode, FsInfoUnsupported as U, Message, NdmpError } from "../protocol/codes.ts";
import type { FsInfo } from "../protocol/xdr/v4.ts";
import { newChallenge } from "../server/auth.ts";
import type { Session } from "../server/session.ts";
import { DATA_TLS_CLASS, DATA_TLS_VERSION, dataTlsOf } from "../transport/tls.ts";
import { offeredAuthTypes } from "./connect.ts";
import type { HandlerTable } from "./handler.ts";

const OK = ErrorCode.NO_ERR;
const identity = hostIdentity();

function hostInfo() {
  return {
    error: OK,
    hostname: identity.hostname,
    os_type: identity.osType,
    os_vers: identity.osVersion,
    hostid: identity.hostId,
  };
}

function serverInfo(s: Session) {
  // Before authentication only the auth types are told (the spec's recommendation, as
  // illumos does): vendor strings are information an unauthenticated peer doesn't need.
  const id = s.authenticated ? s.config.identity : { vendor: "", product: "", revision: "" };
  return {
    error: OK,
    vendor_name: id.vendor,
    product_name: id.product,
    revision_number: id.revision,
    auth_type: offeredAuthTypes(s.config.authMethods),
  };
}

function authAttr(s: Session, req: { auth_type: number }) {
  const offered = offeredAuthTypes(s.config.authMethods);
  if (!offered.includes(req.auth_type)) {
    throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `auth type ${req.auth_type} is not offered`);
  }
  if (req.auth_type === AuthType.MD5) {
    s.md5Challenge = newChallenge();
    return { error: OK, server_attr: { auth_type: AuthType.MD5, challenge: s.md5Challenge } };
  }
  return { error: OK, server_attr: { auth_type: req.auth_type } };
}

function butypeInfo() {
  return {
    error: OK,
    butype_info: BUTYPES.map((b) => ({
      butype_name: b.name,
      default_env: b.defaultEnv.map(([name, value]) => ({ name, value })),
      attrs: b.attrs,
    })),
  };
}

export function fsInfoList(config: Pick<Config, "snapshotHooks">): FsInfo[] {
  const methods = BUTYPES.map((b) => b.name).join(",");
  return listFilesystems().map((m) => {
    const u = usage(m.mountPoint);
    // An unknown figure travels as ALL1, with its `unsupported` bit set below.
    const val = (v: bigint | undefined) => v ?? ALL1;
    const info: FsInfo = {
      unsupported: 0,
      fs_type: m.fsType,
      fs_logical_device: m.mountPoint,
      fs_physical_device: m.source,
      total_size: val(u.totalSize),
      used_size: val(u.usedSize),
      avail_size: val(u.availSize),
      total_inodes: val(u.totalInodes),
      used_inodes: val(u.usedInodes),
      fs_env: [
        { name: "LOCAL", value: isNetworkFs(m.fsType) ? "n" : "y" },
        { name: "TYPE", value: m.fsType },
        { name: "AVAILABLE_BACKUP", value: methods },
        { name: "AVAILABLE_RECOVERY", value: methods },
        // How a backup of this filesystem gets its snapshot (SNAPSHOT=auto|y|required): btrfs, hook or none.
        { name: "SNAPSHOT_METHOD", value: snapshotMethod(config, m.mountPoint, m.fsType) },
      ],
      fs_status: m.options.split(",").includes("ro") ? "online, read-only" : "online",
    };
    info.unsupported = unsupportedBits(info);
    return info;
  });
}

function unsupportedBits(f: FsInfo): number {
  let bits = 0;
  if (f.total_size === ALL1) bits |= U.TOTAL_SIZE;
  if (f.used_size === ALL1) bits |= U.USED_SIZE;
  if (f.avail_size === ALL1) bits |= U.AVAIL_SIZE;
  if (f.total_inodes === ALL1) bits |= U.TOTAL_INODES;
  if (f.used_inodes === ALL1) bits |= U.USED_INODES;
  return bits;
}

function getExtList(s: Session) {
  if (s.extListSelected) throw new NdmpError(ErrorCode.EXT_DANDN_ILLEGAL_ERR, "extensions already negotiated");
  s.extListQueried = true;
  return { error: OK, class_list: offeredClasses(s).map((class_id) => ({ class_id, class_version: [DATA_TLS_VERSION] })) };
}

/**
 * The one class offered: NDMPD_DATA_TLS, when [tls] peer_ca is set. It has no messages: its
 * selection is the agreement that this session's data connections are in TLS, and the DMA
 * selects it on both servers' sessions (a side that did not would fail the handshake).
 */
function offeredClasses(s: Session): number[] {
  return dataTlsOf(s.config.tls) ? [DATA_TLS_CLASS] : [];
}

function setExtList(s: Session, req: { ndmp_selected_ext: Array<{ class_id: number; class_version: number }> }) {
  if (s.extListSelected) throw new NdmpError(ErrorCode.EXT_DANDN_ILLEGAL_ERR, "extensions already negotiated");
  if (!s.extListQueried) throw new NdmpError(ErrorCode.PRECONDITION_ERR, "CONFIG_GET_EXT_LIST must come first");
  const ids = req.ndmp_selected_ext.map((c) => c.class_id);
  if (new Set(ids).size !== ids.length) throw new NdmpError(ErrorCode.EXT_DUPL_CLASSES_ERR);
  const offered = offeredClasses(s);
  for (const c of req.ndmp_selected_ext) {
    if (!offered.includes(c.class_id)) throw new NdmpError(ErrorCode.CLASS_NOT_SUPPORTED_ERR, `class 0x${c.class_id.toString(16)} is not offered`);
    if (c.class_version !== DATA_TLS_VERSION) throw new NdmpError(ErrorCode.VERSION_NOT_SUPPORTED_ERR, `class 0x${c.class_id.toString(16)} version ${c.class_version}`);
  }
  // Nothing is selected when the SET fails (above): the DMA may try again.
  s.dataTls = ids.includes(DATA_TLS_CLASS);
  s.extListSelected = true;
  if (s.dataTls) s.log.info("data connections in TLS (NDMPD_DATA_TLS selected)");
  return { error: OK };
}

export const configHandlers: HandlerTable = {
  [Message.CONFIG_GET_HOST_INFO]: { handle: hostInfo },
  [Message.CONFIG_GET_SERVER_INFO]: { preAuth: true, handle: serverInfo },
  [Message.CONFIG_GET_CONNECTION_TYPE]: {
    handle: () => ({ error: OK, addr_types: [AddrType.LOCAL, AddrType.TCP, AddrType.IPC] }),
  },
  [Message.CONFIG_GET_AUTH_ATTR]: { preAuth: true, handle: authAttr },
  [Message.CONFIG_GET_BUTYPE_INFO]: { handle: butypeInfo },
  [Message.CONFIG_GET_FS_INFO]: { handle: (s) => ({ error: OK, fs_info: fsInfoList(s.config) }) },
  [Message.CONFIG_GET_TAPE_INFO]: { handle: (s) => ({ error: OK, tape_info: s.devices.tapeInfo() }) },
  [Message.CONFIG_GET_SCSI_INFO]: { handle: (s) => ({ error: OK, scsi_info: s.devices.scsiInfo() }) },
  [Message.CONFIG_GET_EXT_LIST]: { handle: getExtList },
  [Message.CONFIG_SET_EXT_LIST]: { handle: setExtList },
};
