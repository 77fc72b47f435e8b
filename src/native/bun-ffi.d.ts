// The few parts of Bun's `bun:ffi` module that src/native/libc.ts uses. Bun's own type package is
// not installed (Node runs the tests and the type-checker), so we declare only what we call.
// The module exists only under Bun; it is imported dynamically after checking process.versions.bun.
declare module "bun:ffi" {
  /** A native address as Bun hands it out (a number, but never to be computed with). */
  export type Pointer = number & { readonly __bunFfiPointer: unique symbol };

  /** Argument and return type names accepted by dlopen (Bun also accepts its FFIType enum). */
  export type FFITypeName = "i32" | "u32" | "i64" | "u64" | "usize" | "ptr" | "void";

  export interface FFIFunctionSpec {
    readonly args: readonly FFITypeName[];
    readonly returns: FFITypeName;
  }

  /**
   * Calls are typed loosely on purpose: libc.ts wraps each symbol in a typed function right away.
   * Arguments are numbers, bigints (64-bit) or typed arrays (for "ptr"); "i64" returns a bigint.
   */
  export type FFICallable = (...args: unknown[]) => unknown;

  export interface Library<Names extends string> {
    readonly symbols: Record<Names, FFICallable>;
    close(): void;
  }

  export function dlopen<Names extends string>(
    path: string,
    symbols: Record<Names, FFIFunctionSpec>,
  ): Library<Names>;

  /** The address of a typed array's bytes (valid while the array is alive); used for SG_IO. */
  export function ptr(view: ArrayBufferView, byteOffset?: number): Pointer;

  /** Reads from native memory; used only to fetch errno through __errno_location(). */
  export const read: {
    i32(ptr: Pointer, byteOffset?: number): number;
  };
}
