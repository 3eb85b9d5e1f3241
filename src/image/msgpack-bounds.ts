/**
 * A walk over msgpack bytes that allocates nothing: it counts the values and
 * containers a decode would make, so a hostile manifest (millions of entries
 * in a few hundred MB) is refused by its shape before msgpackr builds a
 * single object of it.
 */

export interface MsgpackBounds {
  /** Most maps and arrays (a manifest makes one map per entry). */
  maxContainers: number;
  /** Most values of any kind, keys included. */
  maxValues: number;
  /** Deepest nesting. */
  maxDepth: number;
  /** Most values in one array (or pairs in one map): refused at its header, before any of it is walked. */
  maxLength: number;
}

export interface MsgpackShape {
  containers: number;
  values: number;
}

export interface ShapeOptions {
  /**
   * The bytes are only the start of the value (a prefix read first): running
   * out of bytes is not a problem, and the counts are of that prefix. Lists
   * over the limit, depth and bad types are still found, before the rest is read.
   */
  isPrefix?: boolean;
}

/** Why the bytes are not within bounds (or not one well-formed msgpack value), or the shape they have. */
export function msgpackShape(b: Uint8Array, bounds: MsgpackBounds, opts: ShapeOptions = {}): { problem: string } | MsgpackShape {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.byteLength;
  let at = 0;
  let containers = 0;
  let values = 0;
  const cut = opts.isPrefix === true;
  // Values still to read in each open container.
  const pending: number[] = [1];
  while (pending.length > 0) {
    if (pending[pending.length - 1] === 0) {
      pending.pop();
      continue;
    }
    pending[pending.length - 1]!--;
    if (at >= n) return cut ? { containers, values } : { problem: `it ends inside a value (at byte ${at})` };
    if (++values > bounds.maxValues) return { problem: `it holds more than ${bounds.maxValues} values` };
    const t = b[at++]!;
    let skip = 0;
    let open = -1;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) skip = 0;
    else if (t <= 0x8f) open = (t & 0x0f) * 2;
    else if (t <= 0x9f) open = t & 0x0f;
    else if (t <= 0xbf) skip = t & 0x1f;
    else if (t === 0xc1) return { problem: `byte ${at - 1} is not a msgpack type (0xc1)` };
    else {
      const need = HEAD_BYTES[t - 0xc4];
      if (need === undefined) return { problem: `byte ${at - 1} is not a msgpack type (0x${t.toString(16)})` };
      if (at + need > n) return cut ? { containers, values } : { problem: `it ends inside a value (at byte ${at})` };
      switch (t) {
        case 0xc4: // bin 8, 16, 32
        case 0xd9: // str 8
          skip = b[at]!;
          break;
        case 0xc5:
        case 0xda:
          skip = dv.getUint16(at);
          break;
        case 0xc6:
        case 0xdb:
          skip = dv.getUint32(at);
          break;
        case 0xc7: // ext 8, 16, 32: length, then a type byte
          skip = b[at]! + 1;
          break;
        case 0xc8:
          skip = dv.getUint16(at) + 1;
          break;
        case 0xc9:
          skip = dv.getUint32(at) + 1;
          break;
        case 0xdc:
          open = dv.getUint16(at);
          break;
        case 0xdd:
          open = dv.getUint32(at);
          break;
        case 0xde:
          open = dv.getUint16(at) * 2;
          break;
        case 0xdf:
          open = dv.getUint32(at) * 2;
          break;
        default: // numbers and fixext: their head is their size
          skip = FIXED_BYTES[t - 0xc4]!;
      }
      at += need;
    }
    if (open >= 0) {
      if (open > bounds.maxLength * (t === 0xde || t === 0xdf || (t >= 0x80 && t <= 0x8f) ? 2 : 1)) {
        return { problem: `a list of ${t === 0xde || t === 0xdf ? open / 2 : open} items is over the limit of ${bounds.maxLength}` };
      }
      if (++containers > bounds.maxContainers) return { problem: `it holds more than ${bounds.maxContainers} maps and arrays` };
      // Every element takes at least a byte: a count the bytes cannot hold is a lie.
      if (open > n - at && !cut) return { problem: `a container claims ${open} values but only ${n - at} bytes follow` };
      if (pending.length > bounds.maxDepth) return { problem: `it nests deeper than ${bounds.maxDepth}` };
      pending.push(open);
      continue;
    }
    if (skip > n - at) return cut ? { containers, values } : { problem: `a value claims ${skip} bytes but only ${n - at} follow` };
    at += skip;
  }
  if (at !== n) return { problem: `${n - at} bytes follow the value` };
  return { containers, values };
}

/** Bytes after the type byte that give a length (or, for fixed-size types, are the value), from 0xc4 to 0xdf. */
const HEAD_BYTES: Array<number | undefined> = [
  1,
  2,
  4, // bin 8/16/32
  1,
  2,
  4, // ext 8/16/32
  0,
  0, // float 32/64: the value is skipped below
  0,
  0,
  0,
  0, // uint 8/16/32/64
  0,
  0,
  0,
  0, // int 8/16/32/64
  0,
  0,
  0,
  0,
  0, // fixext 1/2/4/8/16
  1,
  2,
  4, // str 8/16/32
  2,
  4, // array 16/32
  2,
  4, // map 16/32
];

/** Bytes of the fixed-size types (numbers, fixext with its type byte), from 0xc4. */
const FIXED_BYTES: Array<number | undefined> = [
  0,
  0,
  0,
  0,
  0,
  0,
  4,
  8, // float
  1,
  2,
  4,
  8, // uint
  1,
  2,
  4,
  8, // int
  2,
  3,
  5,
  9,
  17, // fixext: type byte + data
];
