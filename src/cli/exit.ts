/**
 * Exit codes shared by every command.
 *
 * @module
 */

/** Exit codes: ContainerPilot reads 0 as healthy/success. */
export const EXIT = Object.freeze({
  /** Success (for `health`: healthy). */
  ok: 0,
  /** The command ran and failed (for `health`: unhealthy). */
  failed: 1,
  /** Bad usage or bad configuration: nothing was touched. */
  usage: 2,
});
