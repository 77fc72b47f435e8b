/** The IPC data connection: a listener found by its token, one connection each, tokens unguessable and single-use. */
import { describe, expect, it } from "vitest";
import { AddrType } from "../../../src/protocol/codes.ts";
import { connectIpc, ipcListeners, listenIpc } from "../../../src/transport/ipc.ts";

describe("IPC data connections", () => {
  it("the connecting end reaches the listener of that token, both ways, with EOF", async () => {
    const l = listenIpc();
    expect(l.addr.addr_type).toBe(AddrType.IPC);
    const token = Buffer.from(l.addr.ipc_addr.comm_data);
    expect(token.length).toBe(16);
    const end = connectIpc(token)!;
    expect(end).toBeDefined();
    const other = await l.accepted;
    const got: Buffer[] = [];
    other.on("data", (c: Buffer) => got.push(c));
    const ended = new Promise((r) => other.once("end", r));
    end.end(Buffer.from("stream"));
    await ended;
    expect(Buffer.concat(got).toString()).toBe("stream");
    other.destroy();
    end.destroy();
  });

  it("a token connects once; an unknown token, or that of a closed listener, finds nothing", async () => {
    const before = ipcListeners();
    const l = listenIpc();
    const token = Buffer.from(l.addr.ipc_addr.comm_data);
    expect(connectIpc(Buffer.from(token).reverse())).toBeUndefined();
    const first = connectIpc(token);
    expect(first).toBeDefined();
    expect(connectIpc(token)).toBeUndefined();
    first!.destroy();
    const l2 = listenIpc();
    l2.close();
    await expect(l2.accepted).rejects.toThrow(/closed/);
    expect(connectIpc(Buffer.from(l2.addr.ipc_addr.comm_data))).toBeUndefined();
    expect(ipcListeners()).toBe(before);
  });
});
