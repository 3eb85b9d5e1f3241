/**
 * The native SHA-256 of 16 pages at a time (src/native/sha256x16.c), for the
 * hashing threads: where its library is, or null when it cannot be used (then
 * every chunk is hashed with Bun's SHA-256, which gives the same digests).
 *
 * In the binary, build.ts embeds the compiled library (base64, a few KiB);
 * it is written once to a memfd and opened as /proc/self/fd/N, so nothing is
 * left on disk and every thread of the process can dlopen it. Run from the
 * source tree, it is the one build.ts compiled into .cache/native/. Either way
 * it is used only if the CPU has AVX-512F and AVX-512BW (16 lanes), or the SHA
 * extensions (four pages interleaved: about 1.8x Bun's one at a time). The config key
 * store.native_hash = false turns it off (benchmarks compare the two).
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, existsSync, writeSync } from "node:fs";
import { join } from "node:path";
import { memfdCreate } from "../platform/linux/libc.ts";

// Replaced at compile time by build.ts (`define`): the library, base64; "" when it was built without one.
declare const AUTOPOD_SHA256X16: string | undefined;

/** Where build.ts puts the library it compiles (and where a run from the source tree finds it). */
export const NATIVE_LIBRARY = join(import.meta.dir, "../../.cache/native/libsha256x16.so");

/** The C function's symbols, for bun:ffi (the hashing threads declare the same). */
export const SHA256X16_SYMBOLS = {
  sha256_x16: { args: [FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.ptr], returns: FFIType.void },
  sha256_x16_supported: { args: [], returns: FFIType.i32 },
} as const;

/** Whether the 16-lane SHA-256 is used, and if not, why (for `autopod doctor`). */
export interface NativeHashing {
  /** A path the hashing threads can dlopen, or null. */
  path: string | null;
  why: "on" | "turned off" | "not built in" | "no AVX-512 or SHA extensions" | "cannot load";
  /** How it hashes, when on: 16 lanes of AVX-512, or four pages interleaved with the SHA extensions. */
  way?: "avx512" | "sha-ni";
}

let found: NativeHashing | undefined;

/** Find the library once per process and check the CPU can run it; `isWanted` false (store.native_hash): turned off. */
export function nativeHashing(isWanted = true): NativeHashing {
  if (!isWanted) return { path: null, why: "turned off" };
  found ??= locate();
  return found;
}

/** A path the hashing threads can dlopen, or null (no library, an older CPU, or turned off). */
export function sha256x16Library(isWanted = true): string | null {
  return nativeHashing(isWanted).path;
}

function locate(): NativeHashing {
  let path: string;
  try {
    if (typeof AUTOPOD_SHA256X16 === "string") {
      if (AUTOPOD_SHA256X16 === "") return { path: null, why: "not built in" };
      const fd = memfdCreate("autopod-sha256x16");
      const bytes = Buffer.from(AUTOPOD_SHA256X16, "base64");
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done);
      path = `/proc/self/fd/${fd}`; // kept open for the life of the process
    } else if (existsSync(NATIVE_LIBRARY)) {
      path = NATIVE_LIBRARY;
    } else {
      return { path: null, why: "not built in" };
    }
    const lib = dlopen(path, SHA256X16_SYMBOLS);
    try {
      const kind = lib.symbols.sha256_x16_supported();
      if (kind === 1 || kind === 2) return { path, why: "on", way: kind === 1 ? "avx512" : "sha-ni" };
    } finally {
      lib.close();
    }
    if (path.startsWith("/proc/self/fd/")) closeSync(Number(path.slice("/proc/self/fd/".length)));
    return { path: null, why: "no AVX-512 or SHA extensions" };
  } catch {
    return { path: null, why: "cannot load" };
  }
}
