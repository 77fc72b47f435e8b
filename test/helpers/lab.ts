/**
 * The usual bench for data-service tests: a private network namespace holding our compiled
 * server on 127.0.0.1:10000 (data agent, and tape agent with a virtual drive "vt0") and
 * ndmjob's daemon on 127.0.0.1:10001 (the other tape agent, for three-way jobs).
 */
import { startNdmjobDaemon, type NdmjobDaemon } from "./ndmjob.ts";
import { createNetns, type Netns } from "./netns.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "./server.ts";

/** ndmjob agent strings: D = our server, T = ndmjob's daemon. */
export const D = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
export const T = "127.0.0.1:10001/4,ndmp,ndmp";

export interface Lab {
  ns: Netns;
  srv: RunningServer;
  daemon: NdmjobDaemon;
}

export async function startLab(opts: { capacity?: string } = {}): Promise<Lab> {
  const ns = await createNetns();
  const srv = await startServer({
    netns: ns,
    config:
      `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n` +
      `[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
      `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "${opts.capacity ?? "8GiB"}"\n`,
  });
  const daemon = await startNdmjobDaemon(ns, 10001);
  return { ns, srv, daemon };
}

/** Stops whatever of the lab was started (a failed beforeAll may leave parts of it). */
export async function stopLab(lab: Partial<Lab>): Promise<void> {
  await lab.daemon?.stop();
  await lab.srv?.stop();
  await lab.ns?.stop();
}
