import { test } from "node:test";
import assert from "node:assert/strict";
import {
  buildElf,
  elfArchitecture,
  parseElfHeader,
  PROBE_ARCHITECTURES,
  probeBinary,
} from "../../../src/emulation/index.js";

const EXPECTED: Record<string, { elfClass: number; data: number; machine: number }> = {
  amd64: { elfClass: 2, data: 1, machine: 62 },
  "386": { elfClass: 1, data: 1, machine: 3 },
  arm64: { elfClass: 2, data: 1, machine: 183 },
  arm: { elfClass: 1, data: 1, machine: 40 },
  riscv64: { elfClass: 2, data: 1, machine: 243 },
  ppc64le: { elfClass: 2, data: 1, machine: 21 },
  s390x: { elfClass: 2, data: 2, machine: 22 },
  mips64le: { elfClass: 2, data: 1, machine: 8 },
  mips64: { elfClass: 2, data: 2, machine: 8 },
  loong64: { elfClass: 2, data: 1, machine: 258 },
};

test("every probe is a small static ET_EXEC of its own architecture", () => {
  assert.deepEqual([...PROBE_ARCHITECTURES].sort(), Object.keys(EXPECTED).sort());
  for (const arch of PROBE_ARCHITECTURES) {
    const bin = probeBinary(arch)!;
    assert.ok(bin.length < 256, `${arch} probe is ${bin.length} bytes`);
    const h = parseElfHeader(bin);
    assert.ok(h, arch);
    assert.deepEqual(
      { elfClass: h.elfClass, data: h.data, machine: h.machine },
      EXPECTED[arch],
      arch,
    );
    assert.equal(h.type, 2, arch);
    assert.equal(h.architecture, arch);
    assert.equal(h.interpreter, undefined, `${arch} must be static`);
  }
  assert.equal(probeBinary("sparc64"), undefined);
});

test("entry point lies on the code inside the single PT_LOAD segment", () => {
  for (const arch of ["amd64", "386", "s390x"]) {
    const bin = probeBinary(arch)!;
    const v = new DataView(bin.buffer);
    const le = bin[5] === 1;
    const is64 = bin[4] === 2;
    const entry = is64 ? Number(v.getBigUint64(24, le)) : v.getUint32(24, le);
    const headers = is64 ? 64 + 56 : 52 + 32;
    assert.equal(entry, 0x400000 + headers, arch);
    assert.equal(v.getUint16(is64 ? 56 : 44, le), 1, `${arch} e_phnum`);
    assert.equal(v.getUint32(headers - (is64 ? 56 : 32), le), 1, `${arch} PT_LOAD`);
  }
  // s390x is big-endian: e_machine 0x0016 stored as 00 16.
  const s390 = probeBinary("s390x")!;
  assert.deepEqual([...s390.subarray(18, 20)], [0x00, 0x16]);
});

test("parseElfHeader reads PT_INTERP of a dynamically linked executable", () => {
  const interp = Buffer.from("/lib/ld-musl-aarch64.so.1\0");
  const base = buildElf({ elfClass: 2, data: 1, machine: 183, code: interp });
  const v = new DataView(base.buffer);
  v.setUint32(64, 3, true); // p_type = PT_INTERP
  v.setBigUint64(64 + 8, 120n, true); // p_offset: where `code` was placed
  v.setBigUint64(64 + 32, BigInt(interp.length), true); // p_filesz
  const h = parseElfHeader(base);
  assert.equal(h?.interpreter, "/lib/ld-musl-aarch64.so.1");
  assert.equal(h?.architecture, "arm64");
});

test("parseElfHeader rejects what is not ELF", () => {
  assert.equal(parseElfHeader(new Uint8Array(0)), undefined);
  assert.equal(
    parseElfHeader(Buffer.from("#!/bin/sh\necho hello world, this is a script file\n")),
    undefined,
  );
  const bad = probeBinary("arm64")!.slice();
  bad[4] = 7; // invalid EI_CLASS
  assert.equal(parseElfHeader(bad), undefined);
  assert.equal(parseElfHeader(probeBinary("arm64")!.subarray(0, 40)), undefined);
});

test("elfArchitecture names machines as GOARCH does", () => {
  assert.equal(elfArchitecture(8, 1, 2), "mips");
  assert.equal(elfArchitecture(8, 1, 1), "mipsle");
  assert.equal(elfArchitecture(21, 2, 2), "ppc64");
  assert.equal(elfArchitecture(22, 1, 2), "s390");
  assert.equal(elfArchitecture(243, 1, 1), "riscv");
  assert.equal(elfArchitecture(0x9026, 2, 1), undefined);
});
