import { KilnError } from "../errors.js";

/** The archive is not a well-formed tar (or compressed tar) stream. */
export function invalidLayer(message: string, cause?: unknown): KilnError {
  return new KilnError("E_LAYER_INVALID", message, {
    hint: "the layer blob is corrupt or truncated; pull or rebuild it again",
    cause,
  });
}

/** The archive tries to touch something outside the extraction root, or is not permitted here. */
export function unsafeLayer(entry: string, why: string): KilnError {
  return new KilnError("E_LAYER_UNSAFE", `refusing layer entry ${JSON.stringify(entry)}: ${why}`, {
    hint: "the layer was crafted or produced by a broken tool; do not use this image",
  });
}
