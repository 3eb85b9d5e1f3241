/** Errors of reading and checking CRIU image files. */
import { InvalidArgumentError } from "../../errors.ts";

/** A CRIU image file is malformed, or holds something a pod never has; the message names the file and record. */
export class CriuImageError extends InvalidArgumentError {
  override name = "CriuImageError";
}

/** An image's CRIU files were refused before CRIU ran: nothing on the host was touched. */
export class ImageRefusedError extends InvalidArgumentError {
  override name = "ImageRefusedError";
  constructor(
    readonly imageId: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Image ${imageId.slice(0, 12)}… refused: ${reason}`, options);
  }
}
