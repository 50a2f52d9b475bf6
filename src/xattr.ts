/**
 * Extended attributes (the native @napi-rs/xattr binding), loaded on first use: loading the
 * binding costs tens of milliseconds of start-up that a build which writes no layer (a no-op
 * rebuild, `kiln images`) should not pay. The calls are synchronous: one xattr syscall is far
 * cheaper than a thread-pool round trip, and layers call them once or more per file.
 */
import { createRequire } from "node:module";

type Binding = typeof import("@napi-rs/xattr");

let binding: Binding | undefined;

function load(): Binding {
  binding ??= createRequire(import.meta.url)("@napi-rs/xattr") as Binding;
  return binding;
}

export function getAttribute(path: string, name: string): Buffer | null {
  return load().getAttributeSync(path, name);
}

export function listAttributes(path: string): string[] {
  return load().listAttributesSync(path);
}

export function setAttribute(path: string, name: string, value: Buffer | string): void {
  load().setAttributeSync(path, name, value);
}
