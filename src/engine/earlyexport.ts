/**
 * Export work that starts while the build runs: a step whose layer ends up in a final image
 * hands that layer to the blob maker as soon as the step ends, so diffing and compressing it
 * overlaps the steps that follow instead of waiting for the whole build.
 */
import type { FsResult } from "../cache/index.js";
import type { LayerBlobs } from "../exporter/layers.js";
import type { Vertex } from "../graph/index.js";
import type { Worker } from "../solver/index.js";

/**
 * Digests of the vertices whose layers make up the roots' filesystems: down each root's
 * chain of root filesystems (an exec's first input, a file op's destination, every input of
 * a merge) to its base image. Stages only copied from are not on it.
 */
export function imageLayerVertices(roots: readonly Vertex[]): Set<string> {
  const out = new Set<string>();
  const visit = (v: Vertex | undefined): void => {
    if (!v || out.has(v.digest)) return;
    out.add(v.digest);
    switch (v.op.kind) {
      case "exec":
        visit(v.inputs[0]);
        break;
      case "file":
        if (v.op.dest >= 0) visit(v.inputs[v.op.dest]);
        break;
      case "merge":
        for (const i of v.inputs) visit(i);
        break;
      default:
        break;
    }
  };
  for (const r of roots) visit(r);
  return out;
}

/** The worker, handing each new image layer to `layers` as soon as its step has run. */
export function preparingWorker(
  worker: Worker<FsResult>,
  roots: readonly Vertex[],
  layers: LayerBlobs,
): Worker<FsResult> {
  const wanted = imageLayerVertices(roots);
  return {
    contentKey: (v, signal) => worker.contentKey(v, signal),
    keyReadsContent: (v) => worker.keyReadsContent(v),
    contentInputs: (v) => worker.contentInputs(v),
    inputChecksum: (v, index, input, signal) => worker.inputChecksum(v, index, input, signal),
    emulated: (v) => worker.emulated(v),
    run: async (v, inputs, ctx) => {
      const r = await worker.run(v, inputs, ctx);
      if (wanted.has(v.digest)) {
        // a pulled image: all its layers; a step: the layer it made
        for (const l of r.layers) if (!l.producer || l.producer === v.digest) layers.prepare(l);
      }
      return r;
    },
  };
}
