/**
 * A small, bounded reader of the protobuf wire format (proto2, as CRIU writes
 * it): varints, 64-bit, length-delimited and 32-bit fields. It decodes one
 * message into its fields by number and never interprets them: the decoders
 * beside it pick the fields they need. Every length is checked against the
 * bytes that are there before anything is sliced, and a message may not hold
 * more fields than `MAX_FIELDS`, so a hostile image cannot make it allocate
 * more than the image's own size.
 */
import { CriuImageError } from "./errors.ts";

/** Fields per message: CRIU's largest (a core entry's registers) have a few hundred. */
export const MAX_FIELDS = 1 << 16;

export const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

/** One field as it was on the wire: varints and fixed64 as bigint, fixed32 as number, length-delimited as bytes (a view). */
export type FieldValue = { wire: 0 | 1; value: bigint } | { wire: 5; value: number } | { wire: 2; value: Uint8Array };

/** A decoded message: every occurrence of each field number, in order. */
export class ProtoMessage {
  readonly fields = new Map<number, FieldValue[]>();

  /** Field numbers present. */
  numbers(): number[] {
    return [...this.fields.keys()];
  }

  has(n: number): boolean {
    return this.fields.has(n);
  }

  /** The last occurrence of a field (proto2: the last one wins), as an unsigned 32-bit integer. */
  uint32(n: number, what: string): number | undefined {
    const v = this.#last(n);
    if (v === undefined) return undefined;
    if (v.wire !== WIRE.varint) throw new CriuImageError(`${what}: field ${n} is not a varint`);
    return Number(v.value & 0xffff_ffffn);
  }

  /** A required uint32. */
  requireUint32(n: number, what: string): number {
    const v = this.uint32(n, what);
    if (v === undefined) throw new CriuImageError(`${what}: required field ${n} is missing`);
    return v;
  }

  /** A varint as a signed 32-bit integer (int32: negative numbers are sign-extended to 64 bits). */
  int32(n: number, what: string): number | undefined {
    const v = this.uint32(n, what);
    return v === undefined ? undefined : v | 0;
  }

  /** A zigzag-encoded varint (sint32). */
  sint32(n: number, what: string): number | undefined {
    const v = this.uint32(n, what);
    return v === undefined ? undefined : (v >>> 1) ^ -(v & 1);
  }

  /** A varint as a 64-bit unsigned integer. */
  uint64(n: number, what: string): bigint | undefined {
    const v = this.#last(n);
    if (v === undefined) return undefined;
    if (v.wire !== WIRE.varint) throw new CriuImageError(`${what}: field ${n} is not a varint`);
    return v.value;
  }

  bool(n: number, what: string): boolean | undefined {
    const v = this.uint64(n, what);
    return v === undefined ? undefined : v !== 0n;
  }

  /** Length-delimited bytes (a view into the image). */
  bytes(n: number, what: string): Uint8Array | undefined {
    const v = this.#last(n);
    if (v === undefined) return undefined;
    if (v.wire !== WIRE.bytes) throw new CriuImageError(`${what}: field ${n} is not length-delimited`);
    return v.value;
  }

  /** A UTF-8 string; invalid UTF-8 is refused (CRIU writes paths as protobuf strings, which must be UTF-8). */
  string(n: number, what: string): string | undefined {
    const b = this.bytes(n, what);
    if (b === undefined) return undefined;
    try {
      return UTF8.decode(b);
    } catch {
      throw new CriuImageError(`${what}: field ${n} is not valid UTF-8`);
    }
  }

  requireString(n: number, what: string): string {
    const s = this.string(n, what);
    if (s === undefined) throw new CriuImageError(`${what}: required field ${n} is missing`);
    return s;
  }

  /** An embedded message (the last occurrence; proto2 would merge repeats, CRIU never writes them). */
  message(n: number, what: string): ProtoMessage | undefined {
    const b = this.bytes(n, what);
    return b === undefined ? undefined : decodeMessage(b, what);
  }

  /** Every occurrence of a repeated embedded message. */
  messages(n: number, what: string): ProtoMessage[] {
    return (this.fields.get(n) ?? []).map((v, i) => {
      if (v.wire !== WIRE.bytes) throw new CriuImageError(`${what}: field ${n} is not length-delimited`);
      return decodeMessage(v.value, `${what}[${i}]`);
    });
  }

  /** A repeated uint32, packed or not (both are legal for proto2 readers). */
  uint32s(n: number, what: string): number[] {
    const out: number[] = [];
    for (const v of this.fields.get(n) ?? []) {
      if (v.wire === WIRE.varint) out.push(Number(v.value & 0xffff_ffffn));
      else if (v.wire === WIRE.bytes) {
        const r = new WireReader(v.value, what);
        while (!r.isAtEnd()) out.push(Number(r.varint() & 0xffff_ffffn));
      } else throw new CriuImageError(`${what}: field ${n} is not a repeated varint`);
    }
    return out;
  }

  #last(n: number): FieldValue | undefined {
    const all = this.fields.get(n);
    return all?.[all.length - 1];
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Reads wire-format primitives from a byte view, refusing to read past its end. */
export class WireReader {
  #at = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly what: string,
  ) {}

  get offset(): number {
    return this.#at;
  }

  isAtEnd(): boolean {
    return this.#at >= this.bytes.byteLength;
  }

  /** A base-128 varint of at most 10 bytes (64 bits). */
  varint(): bigint {
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.#at >= this.bytes.byteLength) throw new CriuImageError(`${this.what}: a varint is cut short at byte ${this.#at}`);
      const b = this.bytes[this.#at++]!;
      result |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
    }
    throw new CriuImageError(`${this.what}: a varint is longer than 10 bytes at byte ${this.#at - 10}`);
  }

  /** A varint that must fit a safe length (for sizes): refused when longer than what is left. */
  length(): number {
    const v = this.varint();
    const left = this.bytes.byteLength - this.#at;
    if (v > BigInt(left)) throw new CriuImageError(`${this.what}: a field of ${v} bytes at byte ${this.#at} runs past the end (${left} left)`);
    return Number(v);
  }

  take(n: number): Uint8Array {
    if (n > this.bytes.byteLength - this.#at) throw new CriuImageError(`${this.what}: ${n} bytes at byte ${this.#at} run past the end`);
    const out = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  fixed32(): number {
    const b = this.take(4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  }

  fixed64(): bigint {
    const b = this.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
}

/** Decode one message's fields (not recursing: embedded messages stay bytes until asked for). */
export function decodeMessage(bytes: Uint8Array, what: string): ProtoMessage {
  const r = new WireReader(bytes, what);
  const m = new ProtoMessage();
  let count = 0;
  while (!r.isAtEnd()) {
    const at = r.offset;
    const key = r.varint();
    const number = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (number < 1 || key >> 3n > 0x1fff_ffffn) throw new CriuImageError(`${what}: invalid field number ${key >> 3n} at byte ${at}`);
    if (++count > MAX_FIELDS) throw new CriuImageError(`${what}: more than ${MAX_FIELDS} fields`);
    let v: FieldValue;
    switch (wire) {
      case WIRE.varint:
        v = { wire: 0, value: r.varint() };
        break;
      case WIRE.fixed64:
        v = { wire: 1, value: r.fixed64() };
        break;
      case WIRE.bytes:
        v = { wire: 2, value: r.take(r.length()) };
        break;
      case WIRE.fixed32:
        v = { wire: 5, value: r.fixed32() };
        break;
      default:
        // 3 and 4 are proto2 groups, which CRIU never writes; 6 and 7 do not exist.
        throw new CriuImageError(`${what}: field ${number} has wire type ${wire}, which CRIU never writes (at byte ${at})`);
    }
    const list = m.fields.get(number);
    if (list) list.push(v);
    else m.fields.set(number, [v]);
  }
  return m;
}
