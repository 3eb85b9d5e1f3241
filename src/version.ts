import pkg from "../package.json" with { type: "json" };

// Replaced at compile time by build.ts (`--define`); the fallbacks serve `bun src/main.ts`.
declare const AUTOPOD_BUILD_VERSION: string | undefined;
declare const AUTOPOD_BUILD_COMMIT: string | undefined;

export const VERSION: string = typeof AUTOPOD_BUILD_VERSION === "string" ? AUTOPOD_BUILD_VERSION : pkg.version;
export const COMMIT: string = typeof AUTOPOD_BUILD_COMMIT === "string" ? AUTOPOD_BUILD_COMMIT : "dev";
export const BUN_VERSION: string = Bun.version;
