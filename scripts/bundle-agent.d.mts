/** Types of scripts/bundle-agent.mjs, for the TypeScript that imports it (tests, benchmarks). */
export function sharedLibraries(bin: string): { libs: string[]; loader: string };
export function packageFiles(root?: string): string[];
export function bundleAgent(dest: string, opts?: { root?: string; node?: string }): string;
