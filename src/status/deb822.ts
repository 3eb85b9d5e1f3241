/**
 * Debian control-file stanzas (deb822): the format of the dpkg status
 * database, apt's Packages lists and Release files.
 */

/** One stanza: field name as written, value with continuation lines joined by "\n". */
export type Stanza = Record<string, string>;

/** Parse every stanza of a control file; comment lines ("#") are skipped. */
export function parseDeb822(text: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let current: Stanza | null = null;
  let lastKey: string | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") {
      if (current) stanzas.push(current);
      current = null;
      lastKey = null;
      continue;
    }
    if (line.startsWith("#")) continue;
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (current && lastKey !== null) {
        const cont = line.slice(1);
        current[lastKey] = current[lastKey] === "" ? cont : `${current[lastKey]}\n${cont}`;
      }
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue; // not a field; dpkg would reject it, a status check should not
    current ??= {};
    lastKey = line.slice(0, colon);
    current[lastKey] = line.slice(colon + 1).trim();
  }
  if (current) stanzas.push(current);
  return stanzas;
}

/** The signed text inside an OpenPGP clear-signed message (InRelease), or the text itself. */
export function clearsignedBody(text: string): string {
  if (!text.startsWith("-----BEGIN PGP SIGNED MESSAGE-----")) return text;
  const lines = text.split("\n");
  let i = 1;
  while (i < lines.length && lines[i]!.trim() !== "") i++; // armor headers ("Hash: SHA512")
  const body: string[] = [];
  for (i++; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith("-----BEGIN PGP SIGNATURE-----")) break;
    body.push(line.startsWith("- ") ? line.slice(2) : line);
  }
  return body.join("\n");
}
