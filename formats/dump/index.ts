/** BSD/Linux dump format codec: writer, reader and the inode numbering helper. */
export { DumpWriter, longNameClashes, materialize, nameProblem } from "./writer.ts";
export type { DirChild, DirectoryWrite, DumpWarning, DumpWarningCode, DumpWriterOptions, InodeWrite, WriteStep } from "./writer.ts";
export { DirectoryIndex, DumpReader, inMap } from "./reader.ts";
export type { DecodedDirEntry, DumpEvent, DumpReaderOptions, TapeInfo } from "./reader.ts";
export { DumpFormatError, TP_BSIZE } from "./header.ts";
export { InodeMap } from "./inodes.ts";
export type { IdNumber, InodeMapCompact, InodeMapJSON } from "./inodes.ts";
export type { Xattr } from "./xattr.ts";
