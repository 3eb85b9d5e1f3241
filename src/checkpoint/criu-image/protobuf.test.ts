import { expect, test } from "bun:test";
import { CriuImageError } from "./errors.ts";
import { decodeMessage, MAX_FIELDS, WireReader } from "./protobuf.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

test("varints: one byte, several bytes, 64 bits, and too long", () => {
  expect(new WireReader(bytes(0x01), "t").varint()).toBe(1n);
  expect(new WireReader(bytes(0xac, 0x02), "t").varint()).toBe(300n);
  expect(new WireReader(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "t").varint()).toBe(2n ** 64n - 1n);
  expect(() => new WireReader(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "t").varint()).toThrow("longer than 10 bytes");
  expect(() => new WireReader(bytes(0x80), "t").varint()).toThrow("cut short");
});

test("a message's fields: varint, fixed64, bytes, fixed32, repeated and packed", () => {
  const m = decodeMessage(
    bytes(
      0x08,
      0x96,
      0x01, // 1: varint 150
      0x11,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      0x80, // 2: fixed64
      0x1a,
      0x03,
      0x61,
      0x62,
      0x63, // 3: "abc"
      0x25,
      0x78,
      0x56,
      0x34,
      0x12, // 4: fixed32
      0x28,
      0x01,
      0x28,
      0x02, // 5: repeated 1, 2
      0x2a,
      0x02,
      0x03,
      0x04, // 5: packed 3, 4
      0x30,
      0xab,
      0x01, // 6: sint32 zigzag 171 -> -86
    ),
    "t",
  );
  expect(m.uint32(1, "t")).toBe(150);
  expect(m.fields.get(2)![0]!.value).toBe(0x8000000000000001n);
  expect(m.string(3, "t")).toBe("abc");
  expect(m.fields.get(4)![0]!.value).toBe(0x12345678);
  expect(m.uint32s(5, "t")).toEqual([1, 2, 3, 4]);
  expect(m.sint32(6, "t")).toBe(-86);
  expect(m.uint32(9, "t")).toBeUndefined();
  expect(() => m.requireUint32(9, "rec")).toThrow("rec: required field 9 is missing");
  expect(() => m.string(1, "rec")).toThrow("field 1 is not length-delimited");
});

test("a length past the end is refused before anything is sliced", () => {
  // 2^62 bytes claimed: refused by comparing with what is left, not allocated.
  expect(() => decodeMessage(bytes(0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40), "t")).toThrow(CriuImageError);
  expect(() => decodeMessage(bytes(0x0a, 0x05, 0x61), "t")).toThrow("runs past the end");
  expect(() => decodeMessage(bytes(0x0d, 0x01, 0x02), "t")).toThrow("run past the end");
});

test("groups, unknown wire types, field 0 and invalid UTF-8 are refused", () => {
  expect(() => decodeMessage(bytes(0x0b), "t")).toThrow("wire type 3");
  expect(() => decodeMessage(bytes(0x0e, 0x00), "t")).toThrow("wire type 6");
  expect(() => decodeMessage(bytes(0x00, 0x00), "t")).toThrow("invalid field number 0");
  expect(() => decodeMessage(bytes(0x0a, 0x01, 0xff), "t").string(1, "t")).toThrow("not valid UTF-8");
});

test("a message may not hold more than MAX_FIELDS fields", () => {
  const many = new Uint8Array((MAX_FIELDS + 1) * 2);
  for (let i = 0; i < many.length; i += 2) many[i] = 0x08;
  expect(() => decodeMessage(many, "t")).toThrow(`more than ${MAX_FIELDS} fields`);
});
