/** The daemon's entry point. */
export async function runAgent(_argv: string[]): Promise<number> {
  process.stderr.write("autopod agent: not built yet\n");
  return 1;
}
