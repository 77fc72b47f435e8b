/**
 * NDMP_ADDR_IPC against the compiled server, with our client as DMA: two sessions of one server
 * joined by an in-process connection (what `remote copy` and `remote duplicate` use within one
 * server).
 *  - CONFIG_GET_CONNECTION_TYPE offers it at v4 and v3.
 *  - DATA_LISTEN(IPC) gives a token; DATA_CONNECT with another token is CONNECT_ERR, with the
 *    token it connects (once); both sides report the IPC address; aborts wind both down.
 *  - A listening session that goes away takes its token with it; no descriptor is left.
 *  - Mover to mover at v3 (MOVER_LISTEN(IPC) / MOVER_CONNECT(IPC)): a tape file of 10240-byte
 *    records duplicated from vt0 to vt1, record for record.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { duplicateJob } from "../../src/dma/duplicate.ts";
import { Progress } from "../../src/dma/progress.ts";
import { AddrType, DataState, ErrorCode, Message, TapeMtioOp, TapeOpenMode } from "../../src/protocol/codes.ts";
import { havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { vtapeFiles } from "../helpers/vtape.ts";
import { join } from "node:path";

const ready = havePeers("binary");

describe.runIf(ready)("IPC data connections between two sessions of one server", () => {
  let srv: RunningServer;
  const clients: NdmpClient[] = [];
  const session = async (version = 4) => {
    const c = await NdmpClient.connect("127.0.0.1", srv.port);
    await c.open(version);
    await c.authMd5(USER, PASSWORD);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    srv = await startServer({
      config:
        `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
        `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\n[[tape]]\nname = "vt1"\npath = "$DIR/vt1.tape"\n`,
    });
  });

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await srv?.stop();
  });

  it("is offered at v4 and v3", async () => {
    for (const v of [4, 3]) {
      const c = await session(v);
      expect((await c.request(Message.CONFIG_GET_CONNECTION_TYPE)).body.addr_types).toEqual([AddrType.LOCAL, AddrType.TCP, AddrType.IPC]);
    }
  });

  it("DATA_LISTEN(IPC) -> DATA_CONNECT(IPC): only the token connects, once; aborts wind both down", async () => {
    const a = await session();
    const b = await session();
    const c = await session();
    const l = await a.request(Message.DATA_LISTEN, { addr_type: AddrType.IPC });
    const addr = l.body.connect_addr;
    expect(addr.addr_type).toBe(AddrType.IPC);
    expect(Buffer.from(addr.ipc_addr.comm_data).length).toBe(16);
    const wrong = { addr_type: AddrType.IPC, ipc_addr: { comm_data: Buffer.alloc(16) } };
    await expect(b.request(Message.DATA_CONNECT, { addr: wrong })).rejects.toMatchObject({ error: ErrorCode.CONNECT_ERR });
    await b.request(Message.DATA_CONNECT, { addr });
    await expect(c.request(Message.DATA_CONNECT, { addr })).rejects.toBeInstanceOf(NdmpClientError);
    for (const s of [a, b]) {
      const st = (await s.request(Message.DATA_GET_STATE)).body;
      expect(st.state).toBe(DataState.CONNECTED);
      expect(st.data_connection_addr.addr_type).toBe(AddrType.IPC);
    }
    for (const s of [a, b]) {
      await s.request(Message.DATA_ABORT);
      await s.request(Message.DATA_STOP);
      expect((await s.request(Message.DATA_GET_STATE)).body.state).toBe(DataState.IDLE);
    }
    // Both can listen and connect again.
    const again = await b.request(Message.DATA_LISTEN, { addr_type: AddrType.IPC });
    await a.request(Message.DATA_CONNECT, { addr: again.body.connect_addr });
    for (const s of [a, b]) {
      await s.request(Message.DATA_ABORT);
      await s.request(Message.DATA_STOP);
    }
  });

  it("a listening session that goes away takes its token with it, and leaves no descriptor", async () => {
    const before = srv.fdCount();
    const a = await NdmpClient.connect("127.0.0.1", srv.port);
    await a.open(4);
    await a.authMd5(USER, PASSWORD);
    const addr = (await a.request(Message.MOVER_LISTEN, { mode: 0, addr_type: AddrType.IPC }).catch(() => undefined))?.body.connect_addr;
    expect(addr).toBeUndefined(); // no tape open: refused before a token exists
    const l = await a.request(Message.DATA_LISTEN, { addr_type: AddrType.IPC });
    const closedBefore = srv.logs.filter((x) => x.msg === "session closed").length;
    await a.close();
    // Once the server has torn the session down (its clean-ups ran), the token is gone.
    for (let i = 0; i < 100 && srv.logs.filter((x) => x.msg === "session closed").length === closedBefore; i++) await new Promise((r) => setTimeout(r, 50));
    const b = await session();
    await expect(b.request(Message.DATA_CONNECT, { addr: l.body.connect_addr })).rejects.toMatchObject({ error: ErrorCode.CONNECT_ERR });
    await b.close();
    clients.splice(clients.indexOf(b), 1);
    for (let i = 0; i < 50 && srv.fdCount() > before; i++) await new Promise((r) => setTimeout(r, 100));
    expect(srv.fdCount()).toBe(before);
  });

  it("mover to mover at v3 over IPC: a tape file of 10240-byte records duplicated record for record", async () => {
    const w = await session(3);
    await w.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
    for (let i = 0; i < 30; i++) await w.request(Message.TAPE_WRITE, { data_out: Buffer.alloc(10240, i + 1) });
    await w.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.EOF, count: 1 });
    await w.request(Message.TAPE_CLOSE);
    const s = await session(3);
    const d = await session(3);
    const r = await duplicateJob({ client: s, device: "vt0", name: "vt0" }, { client: d, device: "vt1", name: "vt1" }, { listen: "src", sameServer: true, progress: new Progress({ write: () => true }, "json", "t") });
    expect(r).toMatchObject({ ok: true, bytes: 30 * 10240 });
    expect(r.files).toEqual([{ from: 0, cartridge: 0, to: 0, bytes: 30 * 10240, records: 30, recordSize: 10240 }]);
    const [src] = vtapeFiles(join(srv.dir, "vt0.tape"));
    const [dst] = vtapeFiles(join(srv.dir, "vt1.tape"));
    expect(dst!.length).toBe(30);
    expect(dst!.every((rec, i) => rec.equals(src![i]!))).toBe(true);
  });
});
