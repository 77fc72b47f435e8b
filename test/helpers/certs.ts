/**
 * Certificates for TLS tests, made at test time with openssl: a CA, a server certificate for
 * 127.0.0.1 (IP subjectAltName), a client certificate, an expired client certificate (by
 * `openssl ca` with explicit dates), and a second CA with its own client certificate.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./run.ts";

export interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  expiredCert: string;
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const r = await run("openssl", args, { cwd: dir, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`);
}

const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export async function makeCerts(dir: string, clientCn = "dma-1"): Promise<Certs> {
  mkdirSync(join(dir, "newcerts"), { recursive: true });
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ./index.txt\nnew_certs_dir = ./newcerts\nserial = ./serial\ndefault_md = sha256\npolicy = p\n[ p ]\ncommonName = supplied\n",
  );
  const ca = async (name: string) => openssl(dir, "req", "-x509", ...NEW_KEY, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${name}`);
  const leaf = async (name: string, cn: string, signer: string, ext?: string) => {
    await openssl(dir, "req", ...NEW_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    await openssl(dir, "x509", "-req", "-in", `${name}.csr`, "-CA", `${signer}.pem`, "-CAkey", `${signer}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", ...(ext ? ["-extfile", ext] : []));
  };
  await ca("test-ca");
  await ca("other-ca");
  await leaf("server", "ndmpd-test", "test-ca", "san.ext");
  await leaf("client", clientCn, "test-ca");
  await leaf("other-client", clientCn, "other-ca");
  // The same key, certified for one day in 2020.
  await openssl(dir, "ca", "-batch", "-config", "ca.cnf", "-cert", "test-ca.pem", "-keyfile", "test-ca.key", "-in", "client.csr", "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext");
  const p = (f: string) => join(dir, f);
  return {
    ca: p("test-ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    expiredCert: p("expired.pem"),
    otherCa: p("other-ca.pem"),
    otherClientCert: p("other-client.pem"),
    otherClientKey: p("other-client.key"),
  };
}
