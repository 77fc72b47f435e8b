/**
 * A request refused because of who asks or where it points (a user's scope, data_peers), as
 * opposed to a malformed one. The session tells the DMA why (LOG_MESSAGE) and writes an audit
 * line with the paths and devices it named.
 */
import { ErrorCode, NdmpError } from "../protocol/codes.ts";

export class Refusal extends NdmpError {
  constructor(
    code: ErrorCode,
    readonly why: string,
    readonly detail: { paths?: string[]; devices?: string[]; user?: string } = {},
  ) {
    super(code, why);
  }
}

