/** The capflow error a synchronous call throws; fails when it throws nothing or something else. */
import { isCapflowError, type CapflowError } from '../../src/core/errors.js';

export function capflowErrorOf(fn: () => unknown): CapflowError {
  try {
    fn();
  } catch (e) {
    if (isCapflowError(e)) return e;
    throw e;
  }
  throw new Error('expected an error');
}
