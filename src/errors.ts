/**
 * Every failure gantry reports carries a stable code. The CLI maps codes to
 * exit codes (documented in docs/exit-codes.md); scripts should test the exit
 * code or, with `--format json`, the `code` field, never the message text.
 */

/** Stable error codes, grouped by the exit code they map to. */
export const EXIT_CODES = {
  INTERNAL: 1,
  USAGE: 2,
  INVALID_REFERENCE: 2,
  IMAGE_NOT_FOUND: 3,
  POD_NOT_FOUND: 3,
  NETWORK_NOT_FOUND: 3,
  AMBIGUOUS_IMAGE: 3,
  REGISTRY_UNREACHABLE: 4,
  REGISTRY_ERROR: 4,
  DOWNLOAD_INTERRUPTED: 4,
  INSECURE_TRANSPORT: 4,
  REGISTRY_BLOCKED: 4,
  UNAUTHORIZED: 5,
  DIGEST_MISMATCH: 6,
  SIZE_MISMATCH: 6,
  MANIFEST_INVALID: 7,
  MEDIA_TYPE_UNSUPPORTED: 7,
  SCHEMA1_UNSUPPORTED: 7,
  PLATFORM_NOT_FOUND: 7,
  ARCHIVE_INVALID: 7,
  LAYER_UNSAFE: 8,
  SIGNATURE_INVALID: 9,
  POLICY_REJECTED: 9,
  NO_SPACE: 10,
  STORE_CORRUPT: 11,
  STORE_LOCKED: 11,
  POD_STATE: 12,
  RUNTIME_ERROR: 13,
  CONFIG_INVALID: 14,
  NETWORK_ERROR: 15,
} as const;

export type ErrorCode = keyof typeof EXIT_CODES;

export class GantryError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it, shown after the message. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GantryError';
    this.code = code;
    this.hint = options.hint;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export function isGantryError(err: unknown, code?: ErrorCode): err is GantryError {
  return err instanceof GantryError && (code === undefined || err.code === code);
}

/** The errno code of a Node system error (ENOENT, ENOSPC, ...), if it is one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * Turns a full disk into NO_SPACE so that every writer reports it the same
 * way; other errors pass through untouched.
 */
export function translateFsError(err: unknown, what: string): unknown {
  const errno = errnoCode(err);
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new GantryError('NO_SPACE', `no space left while writing ${what}`, {
      hint: 'free some disk space (gantry image gc, gantry gc) and try again',
      cause: err,
    });
  }
  return err;
}
