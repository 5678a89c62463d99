// Talking to the lifecycle API from the page: the key (if the API asks for one), JSON reads
// and file downloads. The key lives in sessionStorage: this tab only, gone when it closes.

const KEY_STORAGE = "lifecycle-api-key";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${status} ${detail}`);
  }
}

type KeyPrompt = (refused: boolean) => Promise<string>;

let promptForKey: KeyPrompt = () => Promise.reject(new Error("no key prompt installed"));
let pendingPrompt: Promise<string> | null = null;

export function installKeyPrompt(prompt: KeyPrompt): void {
  promptForKey = prompt;
}

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_STORAGE);
}

function headers(): HeadersInit {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** One prompt at a time however many requests were refused together. */
async function askKey(): Promise<void> {
  if (!pendingPrompt) {
    const refused = storedKey() !== null;
    pendingPrompt = promptForKey(refused).finally(() => {
      pendingPrompt = null;
    });
  }
  const key = await pendingPrompt;
  sessionStorage.setItem(KEY_STORAGE, key);
}

async function request(path: string): Promise<Response> {
  for (;;) {
    const sentWith = storedKey();
    const response = await fetch(path, { headers: headers(), cache: "no-store" });
    if (response.status !== 401) return response;
    // A request refused with a key another prompt has since replaced is simply retried.
    if (storedKey() === sentWith) await askKey();
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const response = await request(path);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = ((await response.json()) as { detail?: string }).detail ?? detail;
    } catch {
      /* not JSON: keep the status text */
    }
    throw new HttpError(response.status, path, String(detail));
  }
  return (await response.json()) as T;
}

/** Fetch a file with the key and hand it to the browser as a download named by the server. */
export async function download(path: string, fallbackName: string): Promise<number> {
  const response = await request(path);
  if (!response.ok) throw new HttpError(response.status, path, response.statusText);
  const disposition = response.headers.get("content-disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}
