// The part of @stellar/js-xdr we use (the package ships no type declarations).
declare module "@stellar/js-xdr" {
  class XdrReader {
    constructor(source: Uint8Array);
    readonly eof: boolean;
    remainingBytes(): number;
    read(size: number): Buffer;
    readInt32BE(): number;
    readUInt32BE(): number;
    readBigUInt64BE(): bigint;
  }
  class XdrWriter {
    constructor(buffer?: Buffer | number);
    write(value: Uint8Array | string, size: number): void;
    writeInt32BE(value: number): void;
    writeUInt32BE(value: number): void;
    writeBigUInt64BE(value: bigint): void;
    finalize(): Buffer;
  }
  const jsXdr: { XdrReader: typeof XdrReader; XdrWriter: typeof XdrWriter };
  export default jsXdr;
}
