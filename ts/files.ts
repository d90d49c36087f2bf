/** What a path is when it is not a regular file: the words for an error message. */
import fs from 'node:fs';

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
