/**
 * The two SCSI requests only NDMP v2/v3 have (digest §6.1): SCSI_SET_TARGET 0x203 and
 * SCSI_RESET_BUS 0x205. They reach these handlers only on a v3 session: the v4 codec has no
 * schema for them, so a v4 DMA gets a header NOT_SUPPORTED_ERR like for any unknown code.
 *
 * Both are answered NOT_SUPPORTED_ERR in the reply body (the message is known, the operation
 * is not offered):
 * - SET_TARGET re-points an open SCSI device at another controller/target/LUN. Our changers and
 *   drives are addressed by their configured name (a virtual library, or one /dev/sg node), so
 *   there is no target to change.
 * - RESET_BUS would reset every device on the bus, including drives other sessions are using.
 *   A backup server should not offer that to a DMA; SCSI_RESET_DEVICE resets the one device.
 */
import { ErrorCode, Message, NdmpError } from "../protocol/codes.ts";
import type { HandlerTable } from "./handler.ts";

export const scsiV3Handlers: HandlerTable = {
  [Message.SCSI_SET_TARGET]: {
    handle: () => {
      throw new NdmpError(ErrorCode.NOT_SUPPORTED_ERR, "SCSI devices are addressed by name; their target cannot be changed");
    },
  },
  [Message.SCSI_RESET_BUS]: {
    handle: () => {
      throw new NdmpError(ErrorCode.NOT_SUPPORTED_ERR, "a bus reset would disturb devices other sessions use");
    },
  },
};
