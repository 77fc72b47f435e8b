/** Every NDMP interface's handler table, merged into the one the sessions dispatch on. */
import { configHandlers } from "./config.ts";
import { connectHandlers } from "./connect.ts";
import { dataHandlers } from "./data.ts";
import type { HandlerTable } from "./handler.ts";
import { moverHandlers } from "./mover.ts";
import { scsiHandlers } from "./scsi.ts";
import { scsiV3Handlers } from "./scsi-v3.ts";
import { tapeHandlers } from "./tape.ts";

export const allHandlers: HandlerTable = {
  ...connectHandlers,
  ...configHandlers,
  ...scsiHandlers,
  ...tapeHandlers,
  ...moverHandlers,
  ...dataHandlers,
  ...scsiV3Handlers,
};
