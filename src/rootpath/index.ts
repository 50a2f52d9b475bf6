// Paths inside a root directory (a rootfs, a build context, a copy destination), resolved as
// a chroot would: the one place that follows symlinks without leaving the root.
export { cleanInRoot, resolveInRoot, resolveInRootSync } from "./resolve.js";
