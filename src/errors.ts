/**
 * Domain errors. Each has a stable `code` so the local API can carry it over
 * HTTP and the typed client can raise the same error in the CLI.
 */
export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "conflict"
  | "precondition_failed"
  | "unavailable"
  | "unauthenticated"
  | "internal";

export class AutopodError extends Error {
  override name = "AutopodError";
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Bad input from a user or peer: nothing was changed. */
export class InvalidArgumentError extends AutopodError {
  override name = "InvalidArgumentError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("invalid_argument", message, options);
  }
}

export class NotFoundError extends AutopodError {
  override name = "NotFoundError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("not_found", message, options);
  }
}

export class AlreadyExistsError extends AutopodError {
  override name = "AlreadyExistsError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("already_exists", message, options);
  }
}

export class ConflictError extends AutopodError {
  override name = "ConflictError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("conflict", message, options);
  }
}

/** The host cannot do what was asked (missing tool, too old, no space). */
export class PreconditionError extends AutopodError {
  override name = "PreconditionError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("precondition_failed", message, options);
  }
}

/** Something we depend on did not answer (agent, peer, lock holder). */
export class UnavailableError extends AutopodError {
  override name = "UnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

const HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  precondition_failed: 412,
  unavailable: 503,
  internal: 500,
};

/** The one place domain errors become HTTP statuses. */
export function httpStatusOf(error: unknown): number {
  return error instanceof AutopodError ? HTTP_STATUS[error.code] : 500;
}

/** Rebuild a domain error from its wire form (used by the typed clients). */
export function errorFromWire(code: string, message: string): AutopodError {
  switch (code) {
    case "invalid_argument":
      return new InvalidArgumentError(message);
    case "not_found":
      return new NotFoundError(message);
    case "already_exists":
      return new AlreadyExistsError(message);
    case "conflict":
      return new ConflictError(message);
    case "precondition_failed":
      return new PreconditionError(message);
    case "unavailable":
      return new UnavailableError(message);
    case "unauthenticated":
      return new AutopodError("unauthenticated", message);
    default:
      return new AutopodError("internal", message);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A zod error as one line: "path: message; path: message". */
export function describeZodError(e: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }): string {
  return e.issues.map((i) => `${i.path.length ? i.path.map(String).join(".") + ": " : ""}${i.message}`).join("; ");
}
