/** Reading CRIU's image files, and checking an image from elsewhere against what autopod would have made. */
export { checkCriuImage, type CriuImageSummary, type ExpectedPod, expectedPodOf } from "./check.ts";
export { CriuImageError, ImageRefusedError } from "./errors.ts";
export { checkCriuFileNames, checkCriuFiles, CRIU_RESTORE_OUTPUTS } from "./file-names.ts";
