/** Path strings as the agent handles them: Python's os.path helpers, its name order, upload names. */

/** Python's os.path.split. */
export const pySplit = (path: string): [string, string] => {
  const i = path.lastIndexOf("/") + 1;
  let head = path.slice(0, i);
  if (head && !/^\/+$/.test(head)) head = head.replace(/\/+$/, "");
  return [head, path.slice(i)];
};
export const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);
export const dirname = (path: string) => pySplit(path)[0];
export const joinPath = (dir: string, name: string) =>
  dir === "" || dir.endsWith("/") ? dir + name : `${dir}/${name}`;

/** Python's str order (by code point), which the agent sorts names with. */
export function byCodePoint(a: string, b: string): number {
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return p.done ? (q.done ? 0 : -1) : 1;
    const d = (p.value.codePointAt(0) as number) - (q.value.codePointAt(0) as number);
    if (d !== 0) return d;
  }
}

/** The name part the SDK's uploads use for their temporary files (".NAME.sbx-upload-ID"). */
const UPLOAD_MARK = ".sbx-upload-";

/** The temporary file beside `path` that upload number `id` writes to. */
export const uploadTempPath = (path: string, id: number): string =>
  joinPath(dirname(path) || "/", `.${basename(path)}${UPLOAD_MARK}${id}`);

/** The temporary upload file `name` stands for, if it is one. */
export const uploadTarget = (name: string): string | undefined => {
  const at = name.indexOf(UPLOAD_MARK);
  return name.startsWith(".") && at > 1 ? name.slice(1, at) : undefined;
};
