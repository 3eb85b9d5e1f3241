/**
 * How a value from a user or an image is quoted in a message: as a JSON
 * string (control characters and quotes escaped, so a terminal shows them and
 * does not act on them), and cut to its first `max` characters with an
 * ellipsis and the whole length when longer, so a hostile 4 KiB value does not
 * become a 4 KiB message (fuzz finding P3).
 */
export const QUOTE_MAX = 100;

export function quote(value: string, max = QUOTE_MAX): string {
  const chars = [...value];
  if (chars.length <= max) return JSON.stringify(value);
  return `${JSON.stringify(chars.slice(0, max).join("")).slice(0, -1)}…" (${chars.length.toLocaleString("en-US")} characters)`;
}
