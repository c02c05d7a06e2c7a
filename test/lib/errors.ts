/**
 * The error check the tests share: a validation function for assert.throws /
 * assert.rejects that wants a GantryError with `code` (and, if given, a
 * message matching `pattern`), and says what it got instead.
 */
import assert from 'node:assert/strict';
import { isGantryError, type ErrorCode } from '../../src/errors.js';

export function isCode(code: ErrorCode, pattern?: RegExp): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(isGantryError(err), `expected GantryError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}
