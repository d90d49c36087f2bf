/** doctor(): what the engine runs on, and the mismatches that leave a GPU idle. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { addonInfo, findLibtorch, native, type AddonInfo, type LibtorchFound, type NativeSystemInfo } from './native.js';
import { version } from './version.js';

export interface GpuInfo {
  index: number;
  name: string;
  memoryMiB: number;
}

export interface DoctorReport {
  packageVersion: string;
  node: string;
  platform: string;
  cpu: { model: string; logicalCores: number; physicalCores: number; bf16: boolean };
  torch: { version: string; cudaBuilt: boolean; cudaAvailable: boolean; cudaVersion: string | null; cudnnVersion: string | null; deviceCount: number };
  /** Which addon file loaded (a local build or a prebuilt variant), and why. */
  addon: AddonInfo | null;
  libtorch: {
    /** What the addon was compiled against, and the discovery rule that chose it then. */
    builtAgainst: { libDir: string; version: string; cuda: string; rule: string; why: string };
    /** What this process loaded (the folder of the mapped libtorch_cpu), as the libtorch reports itself. */
    loaded: { libDir: string | null; version: string; cuda: string | null; cudnn: string | null; nccl: string | null; archList: string[] };
    /** What discovery finds now (LIBTORCH, Torch_DIR, python3's torch, the system's), or why it found none. */
    found: LibtorchFound | { error: string };
  };
  nvidia: { driverVersion: string | null; driverCudaVersion: string | null; gpus: GpuInfo[] };
  opencvVersion: string;
  blas: string;
  threads: { intraOp: number; interOp: number; ompNumThreads: number | null; loaderWorkers: number; parallelBackend: string };
  warnings: string[];
}

interface NvidiaSmi {
  driverVersion: string | null;
  driverCudaVersion: string | null;
  gpus: GpuInfo[];
}

/** Asks nvidia-smi (when installed) for the driver and the GPUs; null fields when there is none. */
function queryNvidia(): NvidiaSmi {
  const none: NvidiaSmi = { driverVersion: null, driverCudaVersion: null, gpus: [] };
  try {
    const csv = execFileSync('nvidia-smi', ['--query-gpu=index,name,memory.total,driver_version', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 10000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const gpus: GpuInfo[] = [];
    let driverVersion: string | null = null;
    for (const line of csv.trim().split('\n')) {
      const [index, name, mem, driver] = line.split(',').map((s) => s.trim());
      if (!name) continue;
      gpus.push({ index: Number(index), name, memoryMiB: Number(mem) });
      driverVersion = driver ?? driverVersion;
    }
    const header = execFileSync('nvidia-smi', [], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] });
    const m = /CUDA Version:\s*([\d.]+)/.exec(header);
    return { driverVersion, driverCudaVersion: m ? m[1] : null, gpus };
  } catch {
    return none;
  }
}

function versionLess(a: string, b: string): boolean {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}

/** The folder and file of the libtorch mapped into this process (Linux: /proc/self/maps). */
function mappedLibtorch(): { dir: string; file: string } | null {
  try {
    const m = /\s(\/\S*\/libtorch_cpu\.so[.\d]*)$/m.exec(fs.readFileSync('/proc/self/maps', 'utf8'));
    return m ? { dir: path.dirname(m[1]), file: path.basename(m[1]) } : null;
  } catch {
    return null;
  }
}

/** libtorch's version from the mapped file: its soname suffix (Debian), or pip's torch/version.py. */
function loadedVersion(mapped: { dir: string; file: string } | null, compiled: string): string {
  if (!mapped) return compiled;
  const soname = /\.so\.(\d+\.\d+(?:\.\d+)?)$/.exec(mapped.file);
  if (soname) return soname[1];
  try {
    const py = fs.readFileSync(path.join(mapped.dir, '..', 'version.py'), 'utf8');
    const v = /__version__\s*=\s*'([^']+)'/.exec(py);
    if (v) return v[1];
  } catch {
    // not a pip torch
  }
  return compiled;
}

/** CUDA architectures the loaded libtorch carries kernels for, from its build configuration (NVCC flags). */
export function archList(buildConfig: string): string[] {
  const flags = /NVCC architecture flags:([^\n]*)/.exec(buildConfig)?.[1] ?? '';
  return [...new Set([...flags.matchAll(/code=(sm_\w+|compute_\w+)/g)].map((m) => m[1]))];
}

/** The loader worker count train() uses by default: min(8, cores), as the official trainer caps it. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, os.cpus().length));
}

/** Pure warnings logic, separated so it can be tested with made-up machines. */
export function doctorWarnings(info: NativeSystemInfo, nv: NvidiaSmi, ompNumThreads: number | null, loaderWorkers: number): string[] {
  const w: string[] = [];
  // The driver's own answer (cuDriverGetVersion) where it loads, else nvidia-smi's header.
  const driverCuda = info.driverCudaVersion || nv.driverCudaVersion;
  const builtCuda = info.cudaVersion || (info.cudaBuilt && info.builtAgainst?.cuda !== 'cpu' ? info.builtAgainst?.cuda : '');
  const oldDriver = info.cudaBuilt && !!driverCuda && !!builtCuda && versionLess(driverCuda, builtCuda);
  if (oldDriver)
    w.push(
      `NVIDIA driver${nv.driverVersion ? ` ${nv.driverVersion}` : ''} supports CUDA up to ${driverCuda}, but libtorch was built with CUDA ${builtCuda}: ` +
        'update the driver or install the addon variant built for an older CUDA.',
    );
  // An old driver also hides the GPU: its one line says why, so this one is left out.
  if (info.cudaBuilt && !info.cudaAvailable && !oldDriver)
    w.push('libtorch was built with CUDA but no GPU is visible (driver missing, CUDA_VISIBLE_DEVICES empty, or container without GPU access): work will run on the CPU.');
  if (!info.cudaBuilt && nv.gpus.length > 0)
    w.push(
      `${nv.gpus.length} NVIDIA GPU(s) present (${nv.gpus.map((g) => g.name).join(', ')}) but this libtorch is a CPU-only build: ` +
        'the GPU stays idle. Install a CUDA build of libtorch and rebuild the addon (see README, "GPU").',
    );
  const omp = ompNumThreads ?? info.intraOpThreads;
  if (omp * loaderWorkers > info.hardwareThreads && ompNumThreads !== null)
    w.push(
      `thread oversubscription: OMP_NUM_THREADS=${ompNumThreads} x ${loaderWorkers} loader workers = ${omp * loaderWorkers} threads on ${info.hardwareThreads} logical cores. ` +
        'Lower OMP_NUM_THREADS or workers (the engine picks cores minus workers when OMP_NUM_THREADS is unset).',
    );
  if (info.intraOpThreads + loaderWorkers > 2 * info.hardwareThreads)
    w.push(`${info.intraOpThreads} compute threads plus ${loaderWorkers} loader workers exceed twice the ${info.hardwareThreads} logical cores: expect stalls.`);
  if (/reference BLAS/.test(info.blas) || /none mapped/.test(info.blas))
    w.push(`BLAS in use is ${info.blas}: matrix products run ~40x slower than with OpenBLAS. Install libopenblas0-pthread (Debian/Ubuntu).`);
  return w;
}

export function doctor(options: { workers?: number } = {}): DoctorReport {
  const info = native().systemInfo();
  const mapped = mappedLibtorch();
  let found: LibtorchFound | { error: string };
  try {
    found = findLibtorch();
  } catch (err) {
    found = { error: (err as Error).message };
  }
  const same = 'libDir' in found && mapped !== null && fs.realpathSync(found.libDir) === fs.realpathSync(mapped.dir);
  const nv = queryNvidia();
  const ompEnv = process.env.OMP_NUM_THREADS ? Number(process.env.OMP_NUM_THREADS) : null;
  const ompNumThreads = ompEnv !== null && Number.isFinite(ompEnv) && ompEnv > 0 ? ompEnv : null;
  const loaderWorkers = options.workers ?? defaultWorkers();
  return {
    packageVersion: version,
    node: process.version,
    platform: `${os.platform()} ${os.arch()} ${os.release()}`,
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', logicalCores: info.hardwareThreads, physicalCores: info.physicalCores, bf16: info.cpuBf16 },
    torch: {
      version: info.torchVersion,
      cudaBuilt: info.cudaBuilt,
      cudaAvailable: info.cudaAvailable,
      cudaVersion: info.cudaVersion || null,
      cudnnVersion: info.cudnnVersion || null,
      deviceCount: info.cudaDeviceCount,
    },
    addon: addonInfo() ?? null,
    libtorch: {
      builtAgainst: { ...info.builtAgainst, version: info.torchVersion },
      loaded: {
        libDir: mapped?.dir ?? null,
        version: loadedVersion(mapped, info.torchVersion),
        cuda: info.cudaVersion || (info.cudaBuilt ? 'unknown' : null),
        cudnn: info.cudnnVersion || (same && 'libDir' in found && found.cudnn ? `${found.cudnn} (soname)` : null),
        nccl: same && 'libDir' in found && found.nccl ? `${found.nccl} (soname)` : null,
        archList: archList(info.buildConfig),
      },
      found,
    },
    nvidia: nv,
    opencvVersion: info.opencvVersion,
    blas: info.blas,
    threads: { intraOp: info.intraOpThreads, interOp: info.interOpThreads, ompNumThreads, loaderWorkers, parallelBackend: info.parallelBackend },
    warnings: doctorWarnings(info, nv, ompNumThreads, loaderWorkers),
  };
}

/** Human-readable form of a report, as `yolo26 doctor` prints it. */
export function formatDoctor(r: DoctorReport): string {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [
    `yolo26-native ${r.packageVersion}  (node ${r.node}, ${r.platform})`,
    `CPU           ${r.cpu.model}: ${r.cpu.physicalCores} physical / ${r.cpu.logicalCores} logical cores` +
      (r.cpu.bf16 ? ', native bf16 (cpu_amp=true trains about 2x faster)' : ''),
    `libtorch      ${r.torch.version}  CUDA built: ${yes(r.torch.cudaBuilt)}  CUDA available: ${yes(r.torch.cudaAvailable)}`,
    `CUDA / cuDNN  ${r.torch.cudaVersion ?? 'none'} / ${r.torch.cudnnVersion ?? 'none'} (as libtorch was built)` +
      (r.libtorch.loaded.nccl ? `, NCCL ${r.libtorch.loaded.nccl}` : '') +
      (r.libtorch.loaded.archList.length ? `, kernels for ${r.libtorch.loaded.archList.join(' ')}` : ''),
    `addon         ${r.addon ? `${r.addon.variant}: ${r.addon.file}\n              why: ${r.addon.why}` : 'not loaded'}`,
    `built against libtorch ${r.libtorch.builtAgainst.version} (${r.libtorch.builtAgainst.cuda}) at ${r.libtorch.builtAgainst.libDir}\n              why: ${r.libtorch.builtAgainst.why}`,
    `loaded        libtorch ${r.libtorch.loaded.version} from ${r.libtorch.loaded.libDir ?? 'unknown'}`,
    `NVIDIA driver ${r.nvidia.driverVersion ?? 'none found'}${r.nvidia.driverCudaVersion ? ` (supports CUDA ${r.nvidia.driverCudaVersion})` : ''}`,
    ...r.nvidia.gpus.map((g) => `GPU ${g.index}         ${g.name}, ${(g.memoryMiB / 1024).toFixed(1)} GiB`),
    `OpenCV        ${r.opencvVersion}`,
    `BLAS          ${r.blas}`,
    `threads       ${r.threads.intraOp} intra-op (${r.threads.parallelBackend}), ${r.threads.interOp} inter-op, ` +
      `OMP_NUM_THREADS=${r.threads.ompNumThreads ?? 'unset'}, ${r.threads.loaderWorkers} loader workers by default`,
  ];
  if (r.warnings.length) lines.push('', 'Warnings:', ...r.warnings.map((w) => `  ! ${w}`));
  else lines.push('', 'No problems found.');
  return lines.join('\n');
}
