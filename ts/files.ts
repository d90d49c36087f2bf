/** Facts about files the facade needs: what a path is when it is not a regular file, and a file's identity. */
import fs from 'node:fs';
import path from 'node:path';

/** 'a directory', 'a FIFO (named pipe)', ... for an existing path that is not a regular file; null otherwise. */
export function notAFile(file: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null; // missing, or a builtin name such as yolo26n.yaml: the engine's message says which
  }
  if (st.isFile()) return null;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/**
 * The identity of a file's current contents for a cache key: its absolute path, device, inode, size and mtime (ns),
 * so a file rewritten in place or replaced under the same name gets a new key. Throws when the file is missing.
 */
export function fileIdentity(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${path.resolve(file)}:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}
