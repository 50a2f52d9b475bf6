// The package ships index.d.ts but points "main" at ignore.js without a "types" field, so
// NodeNext resolution misses it; this declares the part we use.
declare module "@balena/dockerignore" {
  interface Ignore {
    add(patterns: string | string[]): Ignore;
    ignores(pathname: string): boolean;
  }
  function ignore(options?: { ignorecase?: boolean }): Ignore;
  export default ignore;
}
