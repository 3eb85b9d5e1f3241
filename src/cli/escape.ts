/**
 * Text from elsewhere (a pod's name from an imported image, a path, an error
 * quoting either) must not drive the terminal: control characters and bidi
 * overrides are printed as \uXXXX escapes, which also keeps JSON valid.
 */

// C0 controls but \n and \t, DEL, C1 controls (0x9b is CSI on many terminals), bidi embeddings, overrides and isolates.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNSAFE_IN_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNSAFE_IN_CELL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function hex(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** Escape what a terminal would act on; newlines and tabs stay (for whole messages and reports). */
export function escapeForTerminal(s: string): string {
  return s.replace(UNSAFE_IN_LINES, hex);
}

/** Escape everything but printable text (for one cell of a table, or one name on a line). */
export function escapeCell(s: string): string {
  return s.replace(UNSAFE_IN_CELL, hex);
}
