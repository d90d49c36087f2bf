/** Loads the compiled addon once (prebuilt or built from source) and types what it exports. */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Yolo26Error } from './errors.js';

export interface NativeSystemInfo {
  torchVersion: string;
  opencvVersion: string;
  cudaBuilt: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudaVersion: string;
  cudnnVersion: string;
  cudnnAvailable: boolean;
  blas: string;
  parallelBackend: string;
  intraOpThreads: number;
  interOpThreads: number;
  hardwareThreads: number;
  physicalCores: number;
  /** Native bf16 arithmetic on the CPU: `cpu_amp: true` training can use it. */
  cpuBf16: boolean;
  buildConfig: string;
}

export interface NativeAddon {
  systemInfo(): NativeSystemInfo;
  setThreads(threads: number, loaderWorkers?: number): number;
  resolveDevice(device: string): string;
  debugMatmul(a: number[], b: number[], async?: boolean): number[] | Promise<number[]>;
  [name: string]: unknown;
}

/** The package root: dist/ sits one level below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeAddon | undefined;

/**
 * libgomp (libtorch's OpenMP) lets an idle worker spin 300000 times before it sleeps. With the loader threads and
 * any other busy process on a small machine, the spinning steals the core the other worker needs: training ran
 * 8-12 % slower on an idle 2-core machine and 1.4x-100x slower on a busy one. libgomp reads the variable when the
 * addon loads it, so it is set here, unless the user chose a policy.
 */
function tuneOpenMp(env: NodeJS.ProcessEnv): void {
  if (env.GOMP_SPINCOUNT === undefined && env.OMP_WAIT_POLICY === undefined) env.GOMP_SPINCOUNT = '1000';
}

export function native(): NativeAddon {
  if (cached) return cached;
  tuneOpenMp(process.env);
  const require = createRequire(import.meta.url);
  const load = require('node-gyp-build') as (dir: string) => NativeAddon;
  try {
    cached = load(packageRoot);
    (cached.setModelsDir as (dir: string) => void)(path.join(packageRoot, 'models'));
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Yolo26Error(
      `yolo26-native: the native addon could not be loaded (${reason}). ` +
        'Build it with `npm run setup` (installs libtorch, OpenCV and the build tools on Debian/Ubuntu, then compiles), ' +
        'or `npx cmake-js compile` if the system libraries are already installed.',
      'YOLO26_NO_ADDON',
    );
  }
  return cached;
}
