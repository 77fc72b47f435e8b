// The NDMP tape rules every drive kind shares (spec 2.7), kept here so virtual.ts and linux-st.ts
// only implement raw tape motion:
//   * one operation at a time (calls queue up, in order);
//   * no operation but open on a closed drive (NOT_OPEN), no second open (BUSY);
//   * writes and filemarks on a drive opened READ fail with PERMISSION;
//   * reads and writes of length 0 do nothing;
//   * after a write, close and every motion other than "write filemarks" first write a filemark,
//     so a backup is never left without its terminating filemark.
import {
  TAPE_OPEN_MODES,
  TapeError,
  type TapeDevice,
  type TapeOpenMode,
  type TapeState,
} from "./device.ts";

export type SpaceOp = "FSF" | "BSF" | "FSR" | "BSR";

/** NDMP counts are u32 on the wire. */
const MAX_COUNT = 0xffff_ffff;

export function checkCount(what: string, count: number): void {
  if (!Number.isInteger(count) || count < 0 || count > MAX_COUNT) {
    throw new TapeError("ILLEGAL_ARGS", `${what}: count must be an integer 0..${MAX_COUNT}, got ${count}`);
  }
}

export abstract class TapeDriveBase implements TapeDevice {
  abstract readonly name: string;
  private mode: TapeOpenMode | null = null;
  private lastOpWasWrite = false;
  private queue: Promise<unknown> = Promise.resolve();

  get openMode(): TapeOpenMode | null {
    return this.mode;
  }

  protected abstract doOpen(mode: TapeOpenMode): Promise<void>;
  /** Must release the device even when it fails. */
  protected abstract doClose(): Promise<void>;
  protected abstract doWrite(data: Uint8Array): Promise<number>;
  protected abstract doRead(maxLen: number): Promise<Buffer>;
  protected abstract doWriteFilemarks(count: number): Promise<void>;
  protected abstract doSpace(op: SpaceOp, count: number): Promise<number>;
  protected abstract doRewind(): Promise<void>;
  protected abstract doUnload(): Promise<void>;
  protected abstract doTestUnitReady(): Promise<void>;
  protected abstract doGetState(): Promise<TapeState>;

  open(mode: TapeOpenMode): Promise<void> {
    return this.exclusive(async () => {
      if (!TAPE_OPEN_MODES.includes(mode)) {
        throw new TapeError("ILLEGAL_ARGS", `${this.name}: unknown open mode ${String(mode)}`);
      }
      if (this.mode !== null) throw new TapeError("BUSY", `${this.name} is already open`);
      await this.doOpen(mode);
      this.mode = mode;
      this.lastOpWasWrite = false;
    });
  }

  close(): Promise<void> {
    return this.exclusive(async () => {
      this.requireOpen();
      try {
        await this.filemarkAfterWrites();
      } finally {
        this.mode = null;
        this.lastOpWasWrite = false;
        await this.doClose();
      }
    });
  }

  write(data: Uint8Array): Promise<number> {
    return this.exclusive(async () => {
      this.requireWritable("write");
      if (data.length === 0) return 0;
      const count = await this.doWrite(data);
      this.lastOpWasWrite = true;
      return count;
    });
  }

  read(maxLen: number): Promise<Buffer> {
    return this.exclusive(async () => {
      this.requireOpen();
      checkCount("read", maxLen);
      if (maxLen === 0) return Buffer.alloc(0);
      this.lastOpWasWrite = false;
      return this.doRead(maxLen);
    });
  }

  writeFilemarks(count: number): Promise<void> {
    return this.exclusive(async () => {
      this.requireWritable("write filemarks");
      checkCount("write filemarks", count);
      this.lastOpWasWrite = false;
      if (count > 0) await this.doWriteFilemarks(count);
    });
  }

  fsf(count: number): Promise<number> {
    return this.space("FSF", count);
  }

  bsf(count: number): Promise<number> {
    return this.space("BSF", count);
  }

  fsr(count: number): Promise<number> {
    return this.space("FSR", count);
  }

  bsr(count: number): Promise<number> {
    return this.space("BSR", count);
  }

  rewind(): Promise<void> {
    return this.motion(() => this.doRewind());
  }

  unload(): Promise<void> {
    return this.motion(() => this.doUnload());
  }

  testUnitReady(): Promise<void> {
    return this.exclusive(async () => {
      this.requireOpen();
      await this.doTestUnitReady();
    });
  }

  getState(): Promise<TapeState> {
    return this.exclusive(async () => {
      this.requireOpen();
      return this.doGetState();
    });
  }

  private space(op: SpaceOp, count: number): Promise<number> {
    return this.exclusive(async () => {
      this.requireOpen();
      checkCount(op, count);
      await this.filemarkAfterWrites();
      return count === 0 ? 0 : this.doSpace(op, count);
    });
  }

  private motion<T>(move: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      this.requireOpen();
      await this.filemarkAfterWrites();
      return move();
    });
  }

  private async filemarkAfterWrites(): Promise<void> {
    if (!this.lastOpWasWrite) return;
    this.lastOpWasWrite = false;
    await this.doWriteFilemarks(1);
  }

  private requireOpen(): void {
    if (this.mode === null) throw new TapeError("NOT_OPEN", `${this.name} is not open`);
  }

  private requireWritable(what: string): void {
    this.requireOpen();
    if (this.mode === "READ") {
      throw new TapeError("PERMISSION", `${this.name}: cannot ${what}, the drive was opened READ`);
    }
  }

  /** Runs operations one after another, in call order, whatever each one's outcome. */
  protected exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.queue.then(operation);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
