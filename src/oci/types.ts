/** Wire types of the OCI image spec (JSON field names exactly as stored). */

/** `sha256:<64 hex>` (other algorithms are parsed but kiln only writes sha256). */
export type Digest = string;

/** The image-spec `platform` object as it appears in JSON (see `toPlatform`/`fromPlatform`). */
export interface OciPlatform {
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  /** Base64 of the embedded content (e.g. the empty descriptor's `e30=`). */
  data?: string;
  platform?: OciPlatform;
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface Healthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The runtime part of an image config (Docker-compatible capitalised names). */
export interface ContainerConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
  Healthcheck?: Healthcheck;
  Shell?: string[];
  OnBuild?: string[] | null;
  ArgsEscaped?: boolean;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  config?: ContainerConfig;
  rootfs: { type: "layers"; diff_ids: Digest[] };
  history?: HistoryEntry[];
}
