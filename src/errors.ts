/**
 * Errors are values with a stable code and an actionable hint. The CLI prints
 * `error: <message>` and `hint: <hint>`; tests assert on `code`.
 */
export class KilnError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "KilnError";
    this.code = code;
    this.hint = opts.hint;
  }
}

export function isKilnError(e: unknown): e is KilnError {
  return e instanceof KilnError;
}

/** The message of any thrown value, for wrapping foreign errors into KilnErrors. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
