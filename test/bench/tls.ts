/**
 * Benchmark: the cost of TLS on a data connection (NDMPD_DATA_TLS). `remote copy` of a tree of
 * one BENCH_MIB file from server A to server B over TCP, with the extension class selected on
 * both sessions, beside the same copy in clear, in the same run (each measured twice, the
 * second counts). Certificates are made with openssl for the run.
 */
import { linkSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { NdmpClient } from "../../src/client/client.ts";
import { copyJob } from "../../src/dma/copy.ts";
import { Progress } from "../../src/dma/progress.ts";
import { Message } from "../../src/protocol/codes.ts";
import { DATA_TLS_CLASS, DATA_TLS_VERSION } from "../../src/transport/tls.ts";
import { makeCerts } from "../helpers/certs.ts";
import type { Measure } from "./migrate.ts";
import { benchClient, startBenchServer } from "./server.ts";

const quiet = () => new Progress({ write: () => true }, "json", "bench");

async function selectDataTls(c: NdmpClient): Promise<void> {
  await c.request(Message.CONFIG_GET_EXT_LIST);
  await c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [{ class_id: DATA_TLS_CLASS, class_version: DATA_TLS_VERSION }] });
}

export async function runTlsBench(dir: string, stream: { data: Buffer; file: string }): Promise<{ reference: Measure; ours: Measure }> {
  const certs = await makeCerts(join(dir, "pki"));
  const tls = `[tls]\nlisten = "127.0.0.1:0"\ncert = "${certs.serverCert}"\nkey = "${certs.serverKey}"\npeer_ca = "${certs.ca}"\n`;
  const tree = join(dir, "tls-src");
  mkdirSync(tree, { recursive: true });
  linkSync(stream.file, join(tree, "big"));
  const aDir = join(dir, "tls-a");
  const bDir = join(dir, "tls-b");
  mkdirSync(aDir);
  mkdirSync(bDir);
  const a = await startBenchServer(aDir, tls);
  const b = await startBenchServer(bDir, tls);
  const once = async (what: string, inTls: boolean): Promise<Measure> => {
    const dst = join(dir, "tls-dst");
    rmSync(dst, { recursive: true, force: true });
    const s = await benchClient(a.port);
    const d = await benchClient(b.port);
    try {
      if (inTls) {
        await selectDataTls(s);
        await selectDataTls(d);
      }
      const t0 = performance.now();
      const r = await copyJob({ client: s, path: tree, name: "a" }, { client: d, path: dst, name: "b" }, { format: "tar", level: 0, excludes: [], listen: "dst", sameServer: false, progress: quiet() });
      const seconds = (performance.now() - t0) / 1000;
      if (!r.ok) throw new Error(`copy failed: ${r.errors.join("; ")}`);
      return { what, bytes: r.bytes, seconds };
    } finally {
      await s.close();
      await d.close();
      rmSync(dst, { recursive: true, force: true });
    }
  };
  const twice = async (f: () => Promise<Measure>) => (await f(), f());
  try {
    const reference = await twice(() => once("copy A -> B, TCP data connection in clear", false));
    const ours = await twice(() => once("copy A -> B, TCP data connection in TLS (NDMPD_DATA_TLS)", true));
    return { reference, ours };
  } finally {
    await a.stop();
    await b.stop();
    for (const d of [aDir, bDir, tree, join(dir, "pki")]) rmSync(d, { recursive: true, force: true });
  }
}
