/** An export's answer says the file's size in this header (its own file: the CLI's client loads nothing of the routes). */
export const EXPORT_BYTES_HEADER = "x-autopod-export-bytes";
