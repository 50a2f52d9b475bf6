/**
 * Extended attributes (the native @napi-rs/xattr binding), loaded on first use: loading the
 * binding costs tens of milliseconds of start-up that a build which writes no layer (a no-op
 * rebuild, `kiln images`) should not pay.
 */
import { createRequire } from "node:module";

type Binding = typeof import("@napi-rs/xattr");

let binding: Binding | undefined;

function load(): Binding {
  binding ??= createRequire(import.meta.url)("@napi-rs/xattr") as Binding;
  return binding;
}

export function getAttribute(path: string, name: string): Promise<Buffer | null> {
  return load().getAttribute(path, name);
}

export function listAttributes(path: string): Promise<string[]> {
  return load().listAttributes(path);
}

export function setAttribute(path: string, name: string, value: Buffer | string): Promise<void> {
  return load().setAttribute(path, name, value);
}
