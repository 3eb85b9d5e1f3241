/**
 * A generic protobuf wire-format walker, with no schema: a message is a list of
 * fields (number, wire type, value), a length-delimited value is also parsed as
 * a nested message when it is one. Encoding a parsed message gives its bytes
 * back exactly, so a mutation changes only what it means to.
 */
import { clone, type Rng } from "./rng.ts";

export type WireType = 0 | 1 | 2 | 5;

export interface PbField {
  num: number;
  wire: WireType;
  /** A varint's value (unsigned 64-bit). */
  int?: bigint;
  /** The payload of a fixed32/fixed64 or length-delimited field. */
  bytes?: Uint8Array;
  /** A length-delimited payload that parses as a message. */
  children?: PbField[];
  /** Written instead of the true length difference: a length that lies. */
  lenDelta?: number;
}

const MAX_DEPTH = 10;

/** Read a varint at `at`; null when it is cut short or longer than 10 bytes. */
export function readVarint(b: Uint8Array, at: number): { value: bigint; next: number } | null {
  let v = 0n;
  for (let i = 0; i < 10; i++) {
    if (at + i >= b.byteLength) return null;
    const byte = b[at + i]!;
    v |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) return { value: v, next: at + i + 1 };
  }
  return null;
}

export function encodeVarint(v: bigint): Uint8Array {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let byte = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) byte |= 0x80;
    out.push(byte);
  } while (x !== 0n);
  return Uint8Array.from(out);
}

/** Parse a whole buffer as a message; null when it is not one (every byte must belong to a field). */
export function parseMessage(b: Uint8Array, depth = 0): PbField[] | null {
  const fields: PbField[] = [];
  let at = 0;
  while (at < b.byteLength) {
    const tag = readVarint(b, at);
    if (tag === null || tag.value > 0xffff_ffffn) return null;
    const num = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    if (num === 0 || num > 536_870_911) return null;
    at = tag.next;
    if (wire === 0) {
      const v = readVarint(b, at);
      if (v === null) return null;
      fields.push({ num, wire, int: v.value });
      at = v.next;
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (at + n > b.byteLength) return null;
      fields.push({ num, wire, bytes: b.slice(at, at + n) });
      at += n;
    } else if (wire === 2) {
      const len = readVarint(b, at);
      if (len === null || len.value > BigInt(b.byteLength - len.next)) return null;
      at = len.next;
      const payload = b.slice(at, at + Number(len.value));
      at += payload.byteLength;
      const f: PbField = { num, wire, bytes: payload };
      if (depth < MAX_DEPTH && payload.byteLength > 0 && !looksLikeText(payload)) {
        const inner = parseMessage(payload, depth + 1);
        if (inner !== null) f.children = inner;
      }
      fields.push(f);
    } else {
      return null; // groups (3, 4) and 6, 7: not in CRIU's images
    }
  }
  return fields;
}

/** Mostly printable ASCII: keep it a string, not a message that happens to parse. */
export function looksLikeText(b: Uint8Array): boolean {
  if (b.byteLength < 2) return false;
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

export function encodeMessage(fields: readonly PbField[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    parts.push(encodeVarint((BigInt(f.num) << 3n) | BigInt(f.wire)));
    if (f.wire === 0) parts.push(encodeVarint(f.int ?? 0n));
    else if (f.wire === 1 || f.wire === 5) parts.push(f.bytes ?? new Uint8Array(f.wire === 1 ? 8 : 4));
    else {
      const payload = f.children ? encodeMessage(f.children) : (f.bytes ?? new Uint8Array());
      const len = BigInt(payload.byteLength + (f.lenDelta ?? 0));
      parts.push(encodeVarint(len < 0n ? 0n : len), payload);
    }
  }
  return concatBytes(parts);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Every field of a message tree with the list that holds it (depth first). */
export function allFields(fields: PbField[]): Array<{ list: PbField[]; index: number; depth: number }> {
  const out: Array<{ list: PbField[]; index: number; depth: number }> = [];
  const walk = (list: PbField[], depth: number) => {
    list.forEach((f, index) => {
      out.push({ list, index, depth });
      if (f.children) walk(f.children, depth + 1);
    });
  };
  walk(fields, 0);
  return out;
}

/** Values that break assumptions: zero, one, sign and width edges. */
export const INTERESTING_INTS: readonly bigint[] = [
  0n,
  1n,
  2n,
  3n,
  7n,
  0x7fn,
  0x80n,
  0xffn,
  0x100n,
  0xfffn,
  0x1000n,
  0x7fffn,
  0xffffn,
  0x10000n,
  0x7fff_ffffn,
  0x8000_0000n,
  0xffff_ffffn,
  0x1_0000_0000n,
  0x7fff_ffff_ffff_ffffn,
  0x8000_0000_0000_0000n,
  0xffff_ffff_ffff_ffffn,
  0xffff_ffff_ffff_fffen,
];

/** One random structural or value mutation of a parsed message, in place; returns what it did. */
export function mutateMessage(fields: PbField[], rng: Rng, strings: readonly string[]): string {
  const all = allFields(fields);
  if (all.length === 0 || rng.chance(0.05)) {
    const f: PbField = rng.chance(0.5)
      ? { num: 1 + rng.below(40), wire: 0, int: rng.pick(INTERESTING_INTS) }
      : { num: 1 + rng.below(40), wire: 2, bytes: rng.bytes(rng.below(16)) };
    fields.push(f);
    return `add field ${f.num}`;
  }
  const { list, index } = rng.pick(all);
  const f = list[index]!;
  const where = `field ${f.num}`;
  const k = rng.below(100);
  if (k < 8) {
    list.splice(index, 1);
    return `drop ${where}`;
  }
  if (k < 16) {
    list.splice(index + 1, 0, clone(f));
    return `duplicate ${where}`;
  }
  if (k < 20) {
    const other = rng.below(list.length);
    [list[index], list[other]] = [list[other]!, list[index]!];
    return `swap ${where} with field ${list[index]!.num}`;
  }
  if (k < 25) {
    const wires: WireType[] = [0, 1, 2, 5];
    const w = rng.pick(wires.filter((x) => x !== f.wire));
    list[index] =
      w === 0
        ? { num: f.num, wire: 0, int: rng.pick(INTERESTING_INTS) }
        : { num: f.num, wire: w, bytes: w === 2 ? (f.bytes ?? rng.bytes(4)) : rng.bytes(w === 1 ? 8 : 4) };
    return `${where} wire type ${f.wire} -> ${w}`;
  }
  if (k < 28) {
    f.num = rng.pick([f.num + 1, f.num - 1 || 1, 1 + rng.below(64), 536_870_911]);
    return `${where} renumbered ${f.num}`;
  }
  if (f.wire === 0) {
    const v = f.int ?? 0n;
    const choice = rng.below(5);
    f.int = choice === 0 ? v + 1n : choice === 1 ? BigInt.asUintN(64, v - 1n) : choice === 2 ? v ^ (1n << BigInt(rng.below(64))) : rng.pick(INTERESTING_INTS);
    return `${where} varint ${v} -> ${f.int}`;
  }
  if (f.wire === 1 || f.wire === 5) {
    const b = f.bytes ?? new Uint8Array(f.wire === 1 ? 8 : 4);
    if (rng.chance(0.5)) b.fill(rng.chance(0.5) ? 0xff : 0);
    else b[rng.below(b.byteLength)]! ^= 1 << rng.below(8);
    f.bytes = b;
    return `${where} fixed value changed`;
  }
  // Length-delimited: a nested message (mutate inside, lie about the length) or a string/bytes.
  if (f.children && k < 40) {
    f.lenDelta = rng.pick([-1, 1, -2, 7, 1000, -1000]);
    return `${where} length lies by ${f.lenDelta}`;
  }
  if (f.children && k < 70) return `in ${where}: ${mutateMessage(f.children, rng, strings)}`;
  if (f.children) f.bytes = encodeMessage(f.children);
  delete f.children;
  const b = f.bytes ?? new Uint8Array();
  const c = rng.below(6);
  if (c === 0 || (looksLikeText(b) && c < 3)) {
    f.bytes = new TextEncoder().encode(rng.pick(strings));
    return `${where} string -> ${JSON.stringify(new TextDecoder().decode(f.bytes)).slice(0, 120)}`;
  }
  if (c === 3) {
    f.bytes = b.slice(0, rng.below(b.byteLength + 1));
    return `${where} truncated to ${f.bytes.byteLength}`;
  }
  if (c === 4) {
    f.bytes = concatBytes([b, rng.bytes(1 + rng.below(64))]);
    return `${where} extended to ${f.bytes.byteLength}`;
  }
  if (b.byteLength === 0) {
    f.lenDelta = 5;
    return `${where} length lies by 5`;
  }
  const nb = b.slice();
  nb[rng.below(nb.byteLength)]! ^= 1 << rng.below(8);
  f.bytes = nb;
  return `${where} bit flip`;
}
