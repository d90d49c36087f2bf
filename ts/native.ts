/**
 * Loads the compiled addon once and types what it exports. Which addon: YOLO26_VARIANT when set; else a local
 * build (build/Release, made by the install script or `npm run setup`); else the prebuilt variant that matches
 * the libtorch found now (scripts/find-libtorch.sh: LIBTORCH, Torch_DIR, python3's torch, the system's), loaded
 * with that libtorch's libraries loaded first. doctor() reports which one loaded and why (addonInfo()).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './addon.js';
import { Yolo26Error } from './errors.js';

export type { NativeAddon, NativeSystemInfo } from './addon.js';

/** A libtorch as scripts/find-libtorch.sh reports it. */
export interface LibtorchFound {
  rule: 'LIBTORCH' | 'Torch_DIR' | 'python3' | 'system';
  why: string;
  cmakeDir: string;
  libDir: string;
  version: string;
  /** "cpu", or the CUDA version it was built with ("12", "12.4"). */
  cuda: string;
  cudnn: string;
  nccl: string;
}

/** Which addon file loaded, and why that one. */
export interface AddonInfo {
  /** "source build", or the prebuilt's tag, e.g. "glibc.torch2.6.cu12". */
  variant: string;
  file: string;
  why: string;
}

/** The package root: dist/ sits one level below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const localBuild = path.join(packageRoot, 'build', 'Release', 'yolo26_native.node');
export const prebuildDir = path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);

let cached: NativeAddon | undefined;
let info: AddonInfo | undefined;

/** What loaded (undefined before the first native() call). */
export function addonInfo(): AddonInfo | undefined {
  return info;
}

/**
 * libgomp (libtorch's OpenMP) lets an idle worker spin 300000 times before it sleeps. With the loader threads and
 * any other busy process on a small machine, the spinning steals the core the other worker needs: training ran
 * 8-12 % slower on an idle 2-core machine and 1.4x-100x slower on a busy one. libgomp reads the variable when the
 * addon loads it, so it is set here, unless the user chose a policy.
 */
function tuneOpenMp(env: NodeJS.ProcessEnv): void {
  if (env.GOMP_SPINCOUNT === undefined && env.OMP_WAIT_POLICY === undefined) env.GOMP_SPINCOUNT = '1000';
}

/** A discovery failure: the script's own paragraph (no libtorch, or LIBTORCH/Torch_DIR naming an empty folder). */
export class LibtorchNotFound extends Yolo26Error {
  constructor(message: string) {
    super(message, 'YOLO26_NO_LIBTORCH');
    this.name = 'LibtorchNotFound';
  }
}

/** Runs the one discovery routine shared with the build. */
export function findLibtorch(env: NodeJS.ProcessEnv = process.env): LibtorchFound {
  let out: string;
  try {
    out = execFileSync('sh', [path.join(packageRoot, 'scripts', 'find-libtorch.sh')], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new LibtorchNotFound(stderr || `yolo26-native: libtorch discovery failed (${(err as Error).message})`);
  }
  const kv: Record<string, string> = {};
  for (const m of out.matchAll(/^([A-Z_]+)='((?:[^']|'\\'')*)'$/gm)) kv[m[1]] = m[2].replace(/'\\''/g, "'");
  return {
    rule: kv.TORCH_RULE as LibtorchFound['rule'],
    why: kv.TORCH_WHY,
    cmakeDir: kv.TORCH_CMAKE_DIR,
    libDir: kv.TORCH_LIB_DIR,
    version: kv.TORCH_VERSION,
    cuda: kv.TORCH_CUDA,
    cudnn: kv.TORCH_CUDNN,
    nccl: kv.TORCH_NCCL,
  };
}

function libcTag(): string {
  if (process.platform !== 'linux') return process.platform;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** The prebuilt key for a libtorch: libc, libtorch major.minor (its ABI), CUDA major or cpu. */
export function variantTag(torch: Pick<LibtorchFound, 'version' | 'cuda'>): string {
  const [major, minor] = torch.version.split('.');
  const cuda = torch.cuda === 'cpu' ? 'cpu' : `cu${torch.cuda.split('.')[0]}`;
  return `${libcTag()}.torch${major}.${minor}.${cuda}`;
}

export function prebuiltFile(tag: string): string {
  return path.join(prebuildDir, `yolo26_native.${tag}.node`);
}

/** Prebuilt variant tags shipped for this platform. */
export function prebuiltTags(): string[] {
  try {
    return fs
      .readdirSync(prebuildDir)
      .map((f) => /^yolo26_native\.(.+)\.node$/.exec(f)?.[1])
      .filter((t): t is string => !!t)
      .sort();
  } catch {
    return [];
  }
}

/**
 * Loads libtorch's own libraries by absolute path (RTLD_GLOBAL) so that a prebuilt, which records only their
 * sonames, binds to the libtorch that was found. Node reports "did not self-register" for a plain library but
 * keeps it loaded (libtorch holds unique symbols, so it is never unloaded).
 */
function preloadLibtorch(libDir: string): void {
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL;
  const files = fs.readdirSync(libDir);
  for (const name of ['c10', 'c10_cuda', 'torch_cpu', 'torch_cuda', 'torch']) {
    const file = files.includes(`lib${name}.so`) ? `lib${name}.so` : files.filter((f) => f.startsWith(`lib${name}.so.`)).sort()[0];
    if (!file) continue;
    try {
      process.dlopen({ exports: {} }, path.join(libDir, file), flags);
    } catch (err) {
      if (!/did not self-register/.test((err as Error).message)) throw err;
    }
  }
}

/** How to build the addon from source, correct for a clone and for an installed package. */
export function buildAdvice(): string {
  const installed = packageRoot.split(path.sep).includes('node_modules');
  return installed
    ? 'Build it from source with `npm rebuild yolo26-native` (pnpm: `pnpm rebuild yolo26-native`; install scripts must be allowed), ' +
        `or from ${packageRoot}: \`node scripts/install.mjs\`. A source build needs cmake, a C++17 compiler and OpenCV, libturbojpeg ` +
        'and yaml-cpp development files (Debian/Ubuntu: sudo apt-get install build-essential cmake libopencv-dev libturbojpeg0-dev libyaml-cpp-dev).'
    : 'Build it with `bash scripts/setup.sh` (installs the build tools and libraries on Debian/Ubuntu, then compiles).';
}

function loadFile(file: string): NativeAddon {
  return createRequire(import.meta.url)(file) as NativeAddon;
}

function resolveAndLoad(): NativeAddon {
  // A libtorch chosen by hand must exist, whichever addon loads: a wrong folder fails here with its own paragraph.
  if (process.env.LIBTORCH || process.env.Torch_DIR) findLibtorch();
  const forced = process.env.YOLO26_VARIANT;
  if (forced) {
    const file = fs.existsSync(forced) ? path.resolve(forced) : prebuiltFile(forced.replace(/^yolo26_native\.|\.node$/g, ''));
    if (!fs.existsSync(file))
      throw new Yolo26Error(
        `yolo26-native: YOLO26_VARIANT=${forced} names no addon (not a file, and no ${path.basename(file)} in ${prebuildDir}). ` +
          `Prebuilt variants here: ${prebuiltTags().join(', ') || 'none'}. Unset YOLO26_VARIANT to pick one automatically.`,
        'YOLO26_NO_ADDON',
      );
    const variant = path.basename(file).replace(/^yolo26_native\.?|\.node$/g, '') || 'source build';
    const torch = variant !== 'source build' ? tryFind() : undefined;
    if (torch) preloadLibtorch(torch.libDir);
    const addon = loadWithContext(file, variant, torch);
    info = { variant, file, why: `YOLO26_VARIANT=${forced}` };
    return addon;
  }

  let localError: string | undefined;
  if (fs.existsSync(localBuild)) {
    try {
      const addon = loadFile(localBuild);
      info = { variant: 'source build', file: localBuild, why: 'a local build (build/Release) is loaded before prebuilts, as node-gyp-build does' };
      return addon;
    } catch (err) {
      localError = (err as Error).message;
    }
  }

  const tags = prebuiltTags();
  if (tags.length === 0 && !localError)
    throw new Yolo26Error(`yolo26-native: the native addon is not built, and no prebuilt ships for ${process.platform}-${process.arch}. ${buildAdvice()}`, 'YOLO26_NO_ADDON');
  const torch = findLibtorch();
  const tag = variantTag(torch);
  const file = prebuiltFile(tag);
  if (!fs.existsSync(file)) {
    throw new Yolo26Error(
      `yolo26-native: no addon for libtorch ${torch.version} (${torch.cuda === 'cpu' ? 'CPU' : `CUDA ${torch.cuda}`}) found at ${torch.libDir} (${torch.why}): ` +
        `needs the variant ${tag}, but the prebuilt variants here are ${tags.join(', ') || 'none'}` +
        (localError ? `, and the local build failed to load (${localError})` : '') +
        `. ${buildAdvice()} Or point LIBTORCH at a libtorch that a prebuilt matches.`,
      'YOLO26_NO_ADDON',
    );
  }
  preloadLibtorch(torch.libDir);
  const addon = loadWithContext(file, tag, torch);
  info = { variant: tag, file, why: `matches libtorch ${torch.version} (${torch.cuda === 'cpu' ? 'CPU' : `CUDA ${torch.cuda}`}) at ${torch.libDir}: ${torch.why}` };
  return addon;
}

function tryFind(): LibtorchFound | undefined {
  try {
    return findLibtorch();
  } catch {
    return undefined;
  }
}

/** Loads an addon file; a failure names the variant, the libtorch it needs and the one found. */
function loadWithContext(file: string, variant: string, torch: LibtorchFound | undefined): NativeAddon {
  try {
    return loadFile(file);
  } catch (err) {
    const found = torch ? `libtorch ${torch.version} (${torch.cuda === 'cpu' ? 'CPU' : `CUDA ${torch.cuda}`}) at ${torch.libDir} (${torch.why})` : 'no libtorch';
    throw new Yolo26Error(
      `yolo26-native: the addon variant ${variant} (${file}) needs the libtorch its name says, but found ${found}; ` +
        `loading failed: ${(err as Error).message}. ${buildAdvice()}`,
      'YOLO26_NO_ADDON',
    );
  }
}

export function native(): NativeAddon {
  if (cached) return cached;
  tuneOpenMp(process.env);
  try {
    cached = resolveAndLoad();
  } catch (err) {
    if (err instanceof Yolo26Error) throw err;
    throw new Yolo26Error(`yolo26-native: the native addon could not be loaded (${(err as Error).message}). ${buildAdvice()}`, 'YOLO26_NO_ADDON');
  }
  cached.setModelsDir(path.join(packageRoot, 'models'));
  return cached;
}
