// Package entry for `import ... from "htlcgate-sdk"` (asc resolves a package
// to its index.ts). The SDK lives in assembly/.
export * from "./assembly/index";
